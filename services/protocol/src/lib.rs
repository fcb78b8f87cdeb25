//! Pusher protocol 7 and our extensions, with no I/O: wire frames, names, signatures, close
//! codes and the per-connection state machine.
//!
//! Architecture invariant: nothing here touches a socket, a database or the system clock;
//! time is always an argument.

pub mod carrier_cursor;
pub mod carrier_subs;
pub mod codes;
pub mod delta;
#[doc(hidden)]
pub mod fuzzing;
pub mod names;
pub mod session;
pub mod sign;
pub mod signin;
pub mod wire;

#[cfg(test)]
mod session_addressed_tests;
#[cfg(test)]
mod session_signin_tests;
#[cfg(test)]
mod session_tests;
