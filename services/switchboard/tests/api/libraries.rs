//! Requests shaped as the official server libraries shape them (see the table in
//! ARCHITECTURE.md), beyond what pusher-http-node sends.

use serde_json::{Value, json};

use crate::helpers::{APP, data_of, spawn_app};

#[tokio::test]
async fn optional_fields_sent_as_null_are_absent() {
    let app = spawn_app().await;
    let (mut subscriber, _) = app.connected(APP.1).await;
    subscriber.subscribe("c", "", None).await;
    let path = format!("/apps/{}/events", APP.0);
    let body =
        json!({"name":"e","channels":["c"],"channel":null,"data":"d","socket_id":null,"info":null});
    let response = app.api(APP, "POST", &path, &[], Some(&body)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));
    let event = subscriber.expect_event("e").await;
    assert_eq!(event["data"], "d");

    let path = format!("/apps/{}/batch_events", APP.0);
    let batch = json!({"batch":[{"channel":"c","name":"b","data":"{\"n\":1}","socket_id":null}]});
    let response = app.api(APP, "POST", &path, &[], Some(&batch)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(data_of(&subscriber.expect_event("b").await), json!({"n":1}));
}

#[tokio::test]
async fn a_get_signed_with_the_empty_bodys_md5_is_accepted() {
    // pusher-http-python adds body_md5 to every request, GETs included.
    let app = spawn_app().await;
    let empty_md5 = protocol::sign::body_md5_hex(b"");
    let path = format!("/apps/{}/channels", APP.0);
    let response = app
        .api(APP, "GET", &path, &[("body_md5", &empty_md5)], None)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"channels":{}})
    );
    // A GET whose body_md5 is not the empty body's is still refused.
    let wrong = protocol::sign::body_md5_hex(b"x");
    let response = app
        .api(APP, "GET", &path, &[("body_md5", &wrong)], None)
        .await;
    assert_eq!(response.status(), 401);
}
