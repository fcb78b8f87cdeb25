//! The conformance suite against the in-process broker.

use broker::Local;

#[tokio::test]
async fn local_broker_conforms() {
    broker::testing::conformance(|sink| Local::new(sink)).await;
}
