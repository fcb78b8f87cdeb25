//! Conformance checks of presence: members are users, not connections; apps and channels
//! never share; a full channel refuses new users only; a sweep for dead nodes takes nothing
//! from a live one.

use std::sync::Arc;

use protocol::names::UserId;

use super::{RecordingSink, app, channel, member, socket};
use crate::Broker;

pub(super) async fn presence_is_per_user_not_per_connection<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let broker = make(Arc::new(RecordingSink::default()));
    let (a, room) = (app("a"), channel("presence-room"));
    let first = broker
        .presence_join(&a, &room, &socket("1.1"), member("ann"), 100)
        .await
        .unwrap();
    assert!(first.first_for_user);
    assert_eq!(first.members, [member("ann")]);

    let second_tab = broker
        .presence_join(&a, &room, &socket("1.2"), member("ann"), 100)
        .await
        .unwrap();
    assert!(
        !second_tab.first_for_user,
        "a second connection of one user is not a new member"
    );
    assert_eq!(second_tab.members.len(), 1);

    let again = broker
        .presence_join(&a, &room, &socket("1.2"), member("ann"), 100)
        .await
        .unwrap();
    assert!(
        !again.first_for_user,
        "joining twice with one socket is a no-op"
    );

    let bob = broker
        .presence_join(&a, &room, &socket("1.3"), member("bob"), 100)
        .await
        .unwrap();
    assert!(bob.first_for_user);
    assert_eq!(bob.members, [member("ann"), member("bob")]);

    assert_eq!(
        broker
            .presence_leave(&a, &room, &socket("1.1"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        broker
            .presence_leave(&a, &room, &socket("1.2"))
            .await
            .unwrap(),
        Some(UserId::parse("ann").unwrap()),
        "the user leaves with their last connection"
    );
    assert_eq!(
        broker
            .presence_leave(&a, &room, &socket("1.2"))
            .await
            .unwrap(),
        None,
        "leaving twice is a no-op"
    );
    assert_eq!(
        broker.presence_members(&a, &room).await.unwrap(),
        [member("bob")]
    );
}

pub(super) async fn presence_is_scoped_by_app_and_channel<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let broker = make(Arc::new(RecordingSink::default()));
    let room = channel("presence-room");
    broker
        .presence_join(&app("a"), &room, &socket("1.1"), member("ann"), 100)
        .await
        .unwrap();
    assert!(
        broker
            .presence_members(&app("b"), &room)
            .await
            .unwrap()
            .is_empty(),
        "apps never share presence"
    );
    assert!(
        broker
            .presence_members(&app("a"), &channel("presence-other"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        broker
            .presence_leave(&app("b"), &room, &socket("1.1"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        broker
            .presence_members(&app("a"), &room)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub(super) async fn presence_refuses_new_users_beyond_the_maximum<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let broker = make(Arc::new(RecordingSink::default()));
    let (a, room) = (app("a"), channel("presence-small"));
    broker
        .presence_join(&a, &room, &socket("1.1"), member("ann"), 2)
        .await
        .unwrap();
    broker
        .presence_join(&a, &room, &socket("1.2"), member("bob"), 2)
        .await
        .unwrap();
    let refused = broker
        .presence_join(&a, &room, &socket("1.3"), member("cat"), 2)
        .await;
    assert!(
        matches!(refused, Err(crate::BrokerError::PresenceFull { max: 2 })),
        "{refused:?}"
    );
    let second_tab = broker
        .presence_join(&a, &room, &socket("1.4"), member("ann"), 2)
        .await;
    assert!(
        second_tab.is_ok(),
        "an existing member's second connection is not a new member"
    );
    assert_eq!(broker.presence_members(&a, &room).await.unwrap().len(), 2);
}

pub(super) async fn a_sweep_for_dead_nodes_takes_nothing_from_a_live_node<B: Broker>(
    make: &impl Fn(Arc<RecordingSink>) -> B,
) {
    let broker = make(Arc::new(RecordingSink::default()));
    let (a, room) = (app("a"), channel("presence-swept"));
    broker
        .presence_join(&a, &room, &socket("1.1"), member("ann"), 100)
        .await
        .unwrap();
    assert_eq!(broker.sweep_dead_nodes().await.unwrap(), []);
    assert_eq!(
        broker.presence_members(&a, &room).await.unwrap(),
        [member("ann")],
        "the sweeping node's own members stay"
    );
    assert_eq!(
        broker
            .presence_leave(&a, &room, &socket("1.1"))
            .await
            .unwrap(),
        Some(UserId::parse("ann").unwrap())
    );
}
