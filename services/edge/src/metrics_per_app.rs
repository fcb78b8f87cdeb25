//! Per-app Prometheus series, off unless the operator asks (`--metrics-per-app-cap N`).
//!
//! An app id as a label is unbounded (every tenant adds series), so it is only ever a label
//! for the first `cap` apps this process counts; every later app is summed under
//! `app="(other)"`. The admitted set is bounded by the cap and never shrinks (a counter's
//! series must not come and go). Metering calls in here (`Meter`), so the figures agree with
//! the usage rows: nothing of an exempt app (the console's) is counted.

use std::collections::HashSet;
use std::sync::Mutex;

use protocol::names::AppId;

const APP_CONNECTIONS: &str = "switchboard_app_connections";
const APP_PUBLISHED: &str = "switchboard_app_messages_published_total";
const APP_DELIVERED: &str = "switchboard_app_messages_delivered_total";

/// The label of every app past the cap; no app id has parentheses, so it names none.
pub const OTHER_APPS: &str = "(other)";

pub(crate) fn describe() {
    metrics::describe_gauge!(
        APP_CONNECTIONS,
        "Connections open on this node, by app (with --metrics-per-app-cap; later apps as (other))"
    );
    metrics::describe_counter!(
        APP_PUBLISHED,
        "Messages published, by app (with --metrics-per-app-cap; later apps as (other))"
    );
    metrics::describe_counter!(
        APP_DELIVERED,
        "Messages delivered, by app (with --metrics-per-app-cap; later apps as (other))"
    );
}

/// Which apps get a label of their own: the first `cap` seen.
#[derive(Debug)]
pub struct PerAppMetrics {
    cap: usize,
    labelled: Mutex<HashSet<AppId>>,
}

impl PerAppMetrics {
    /// Labels for at most `cap` apps (0: every app is `(other)`).
    pub fn with_cap(cap: usize) -> Self {
        crate::metrics::prometheus();
        Self {
            cap,
            labelled: Mutex::default(),
        }
    }

    /// The app's label value: its id while it is (or fits) among the first `cap`, else
    /// `(other)`.
    fn label(&self, app: &AppId) -> String {
        let mut labelled = self.labelled.lock().expect("per-app metrics lock poisoned");
        if labelled.contains(app) {
            return app.as_str().to_owned();
        }
        if labelled.len() < self.cap {
            labelled.insert(app.clone());
            return app.as_str().to_owned();
        }
        OTHER_APPS.to_owned()
    }

    pub(crate) fn connection_opened(&self, app: &AppId) {
        metrics::gauge!(APP_CONNECTIONS, "app" => self.label(app)).increment(1.0);
    }

    pub(crate) fn connection_closed(&self, app: &AppId) {
        metrics::gauge!(APP_CONNECTIONS, "app" => self.label(app)).decrement(1.0);
    }

    pub(crate) fn published(&self, app: &AppId, messages: u64) {
        metrics::counter!(APP_PUBLISHED, "app" => self.label(app)).increment(messages);
    }

    pub(crate) fn delivered(&self, app: &AppId, messages: u64) {
        metrics::counter!(APP_DELIVERED, "app" => self.label(app)).increment(messages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    #[test]
    fn only_the_first_apps_up_to_the_cap_get_a_label_of_their_own() {
        let metrics = PerAppMetrics::with_cap(2);
        assert_eq!(metrics.label(&app("a")), "a");
        assert_eq!(metrics.label(&app("b")), "b");
        assert_eq!(metrics.label(&app("c")), OTHER_APPS);
        assert_eq!(
            metrics.label(&app("a")),
            "a",
            "a labelled app keeps its label"
        );
        for n in 0..1000 {
            assert_eq!(metrics.label(&app(&format!("x{n}"))), OTHER_APPS);
        }
        assert_eq!(
            metrics.labelled.lock().unwrap().len(),
            2,
            "bounded by the cap"
        );
    }

    #[test]
    fn a_cap_of_zero_labels_no_app() {
        let metrics = PerAppMetrics::with_cap(0);
        assert_eq!(metrics.label(&app("a")), OTHER_APPS);
    }
}
