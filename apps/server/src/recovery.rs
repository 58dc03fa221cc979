//! The reconciler as this instance runs it: every run goes through [`RecoveryLog`], which
//! keeps the last runs for `GET /api/admin/reconciliation` and logs what each did.

use std::{collections::VecDeque, sync::Arc};

use parking_lot::Mutex;
use seatkeeper_domain::service::{Reconciler, RecoveryReport};

/// How many runs the admin API shows.
const KEPT: usize = 20;

/// The reconciler and its recent runs.
#[derive(Clone)]
pub struct RecoveryLog {
    reconciler: Reconciler,
    runs: Arc<Mutex<VecDeque<RecoveryReport>>>,
}

impl RecoveryLog {
    pub fn new(reconciler: Reconciler) -> Self {
        Self {
            reconciler,
            runs: Arc::default(),
        }
    }

    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }

    /// Runs one pass and keeps its report; `None` when the store failed (logged).
    pub async fn run(&self) -> Option<RecoveryReport> {
        match self.reconciler.run_once().await {
            Ok(report) => {
                for (action, n) in [
                    ("activated", report.activated),
                    ("expired", report.expired),
                    ("refunded", report.refunded),
                    ("verified", report.verified),
                    ("in_doubt", report.in_doubt),
                ] {
                    metrics::counter!("seatkeeper_recovery_actions_total", "action" => action)
                        .increment(n);
                }
                let mut runs = self.runs.lock();
                if runs.len() == KEPT {
                    runs.pop_front();
                }
                runs.push_back(report.clone());
                Some(report)
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconciliation run failed");
                None
            }
        }
    }

    /// The last runs, newest first.
    pub fn recent(&self) -> Vec<RecoveryReport> {
        self.runs.lock().iter().rev().cloned().collect()
    }
}
