//! Where a new subscriber stands in its channel's history, and what it missed.
//!
//! `connection` holds the channel's live frames in the outbox (`Outbox::hold`), registers the
//! subscriber, then asks `catch_up`: the position to announce in `subscription_succeeded`,
//! the frames to replay after it (or why not: `resume_failed`), and the serial after which
//! the held live frames are new to the subscriber. The contract the client gets: after
//! `subscription_succeeded` with `{"epoch": E, "serial": S}`, every event of the channel with
//! a serial above S follows, in order, once, for as long as the subscription lasts.

use std::time::Duration;

use broker::{Broker, History, HistoryWindow};
use bytestring::ByteString;
use protocol::names::{AppId, ChannelName, UserId};
use protocol::wire::{self, ChannelPosition, ResumeFailure};
use tenancy::PlanLimits;

use crate::outbox::Room;

/// The history window a plan gives every channel of its apps.
pub fn history_window(limits: &PlanLimits) -> HistoryWindow {
    HistoryWindow {
        max_events: limits.history_events,
        max_age: Duration::from_secs(limits.history_seconds),
        app_max_bytes: limits.history_bytes,
    }
}

/// What a new subscriber is sent, in this order: `subscription_succeeded` with `position`,
/// `failure` (a `resume_failed` frame) if any, the `replay`, then the held live frames with a
/// serial above `release_after`.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// `None` when the history could not be read (the confirmation then carries no position).
    pub position: Option<ChannelPosition>,
    pub failure: Option<String>,
    pub replay: Vec<ByteString>,
    pub release_after: Option<u64>,
}

/// Reads the channel's position, or with `resume` what the client missed since it: of the
/// events addressed to one member, only those to `member` (the subscriber's presence user)
/// are replayed, so a third member never reads two others' messages from history. At most
/// what fits the outbox's `room` (frames and bytes) is replayed; a longer gap fails as
/// `too_many_to_replay` (the history API pages through it) rather than closing the
/// connection as a slow consumer.
pub async fn catch_up(
    broker: &dyn Broker,
    app: &AppId,
    channel: &ChannelName,
    resume: Option<&ChannelPosition>,
    member: Option<&UserId>,
    room: Room,
) -> CatchUp {
    let Some(resume) = resume else {
        return match broker.position(app, channel).await {
            Ok(position) => CatchUp {
                release_after: Some(position.serial),
                position: Some(ChannelPosition {
                    epoch: position.epoch,
                    serial: position.serial,
                }),
                ..CatchUp::default()
            },
            Err(error) => {
                tracing::warn!(%error, "channel position unavailable");
                CatchUp::default()
            }
        };
    };
    let history = broker
        .history(app, channel, Some(resume.serial), Some(&resume.epoch))
        .await;
    let failed = |epoch: String, latest: u64, oldest: u64, reason: ResumeFailure| CatchUp {
        failure: Some(wire::resume_failed(
            channel.as_str(),
            Some(&epoch),
            Some(oldest),
            reason,
        )),
        position: Some(ChannelPosition {
            epoch,
            serial: latest,
        }),
        release_after: Some(latest),
        replay: Vec::new(),
    };
    let history = history.map(|history| for_member(history, member));
    match history {
        Ok(History::Replay {
            epoch,
            latest,
            frames,
        }) if !fits(&frames, room) => {
            let oldest = frames.first().map_or(latest + 1, |(serial, _)| *serial);
            failed(epoch, latest, oldest, ResumeFailure::TooManyToReplay)
        }
        Ok(History::Replay {
            epoch,
            latest,
            frames,
        }) => CatchUp {
            position: Some(ChannelPosition {
                epoch,
                serial: resume.serial,
            }),
            failure: None,
            replay: frames.into_iter().map(|(_, frame)| frame).collect(),
            release_after: Some(latest),
        },
        Ok(History::Gap {
            epoch,
            latest,
            oldest_available,
        }) => {
            let reason = if epoch == resume.epoch {
                ResumeFailure::OutsideWindow
            } else {
                ResumeFailure::EpochChanged
            };
            failed(epoch, latest, oldest_available, reason)
        }
        Err(error) => {
            tracing::warn!(%error, "channel history unavailable");
            CatchUp {
                failure: Some(wire::resume_failed(
                    channel.as_str(),
                    None,
                    None,
                    ResumeFailure::Unavailable,
                )),
                ..CatchUp::default()
            }
        }
    }
}

/// Keeps the frames every subscriber gets and those addressed to `member`.
fn for_member(history: History, member: Option<&UserId>) -> History {
    match history {
        History::Replay {
            epoch,
            latest,
            mut frames,
        } => {
            frames.retain(|(_, frame)| match wire::addressee(frame) {
                None => true,
                Some(to) => member.is_some_and(|member| member.as_str() == to),
            });
            History::Replay {
                epoch,
                latest,
                frames,
            }
        }
        gap @ History::Gap { .. } => gap,
    }
}

/// Whether a replay fits the outbox's room, in frames and in bytes.
fn fits(frames: &[(u64, ByteString)], room: Room) -> bool {
    let bytes: usize = frames.iter().map(|(_, frame)| frame.len()).sum();
    frames.len() <= room.frames && bytes <= room.bytes
}
