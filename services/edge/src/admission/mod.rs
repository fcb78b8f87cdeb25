//! Tenant isolation at this node's admission points (issue 15): one app's storm must not cost
//! another app a connection or a publish. Per app and per node, new connections take a token
//! from the app's connect-rate bucket (`connect_rate`, checked in `link::admit` before the
//! app's connection slot; refused with 4100) and authenticated HTTP API requests take one of
//! the app's in-flight permits (`api_in_flight`, in `http_api::authenticate`; refused with
//! 429 and `Retry-After: 1`). Both are keyed by the id of an app the catalog found, never by
//! anything else a client sends.

mod api_in_flight;
mod connect_rate;
#[cfg(test)]
mod hook_tests;

pub(crate) use api_in_flight::InFlightPermit;

use crate::EdgeSettings;
use api_in_flight::ApiInFlight;
use connect_rate::ConnectRate;

/// Refusals at these admission points, by `kind` (`connect_rate`, `api_in_flight`).
const REFUSALS: &str = "switchboard_tenant_admission_refusals_total";

/// The two per-app admission limits of this node.
pub(crate) struct TenantAdmission {
    pub(crate) connects: ConnectRate,
    pub(crate) api: ApiInFlight,
}

impl TenantAdmission {
    pub(crate) fn new(settings: &EdgeSettings) -> Self {
        Self {
            connects: ConnectRate::new(settings.app_connects_per_second),
            api: ApiInFlight::new(settings.api_in_flight_per_app),
        }
    }
}

/// Which limit refused.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused {
    ConnectRate,
    ApiInFlight,
}

impl Refused {
    const ALL: [Self; 2] = [Self::ConnectRate, Self::ApiInFlight];

    fn label(self) -> &'static str {
        match self {
            Self::ConnectRate => "connect_rate",
            Self::ApiInFlight => "api_in_flight",
        }
    }
}

/// Counts a refusal; the label set is `Refused`'s two values, never an app id.
pub(crate) fn count_refusal(kind: Refused) {
    crate::metrics::prometheus();
    metrics::counter!(REFUSALS, "kind" => kind.label()).increment(1);
}

/// For `metrics::describe`.
pub(crate) fn describe_metrics() {
    metrics::describe_counter!(
        REFUSALS,
        "New connections (connect_rate, closed with 4100) and HTTP API requests (api_in_flight, \
         answered 429) refused by an app's per-node admission limits"
    );
}

/// Registers both series at zero, so alerts find them before the first refusal.
pub(crate) fn register_metrics_at_start() {
    for kind in Refused::ALL {
        metrics::counter!(REFUSALS, "kind" => kind.label()).increment(0);
    }
}
