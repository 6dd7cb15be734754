//! The errors a caller branches on, and the exit code each one gives.
//!
//! | exit | meaning | error |
//! |---|---|---|
//! | 0 | done | — |
//! | 1 | error: an action failed, another apply holds the lock, EC2 unreachable | `Busy`, anything else |
//! | 2 | bad usage or bad input: policy, event, plan, journal, state or plugin | `InputError`, `PluginError` at load |
//! | 3 | a guardrail stopped the run before any change | `GuardrailStop` |
//! | 4 | plugins failed: the plan is incomplete (destructive actions on their images blocked); the rest was planned or applied | `PLUGIN_ERRORS_EXIT` |
//! | 5 | `plan --detailed-exitcode` only: the plan has changes (0 then means none) | `CHANGES_EXIT` |
//! | 130 | an apply interrupted by Ctrl-C (SIGINT); run it again to resume from its journal | `INTERRUPTED_EXIT` |

/// The exit code of a plan or apply that plugins failed in (fail-closed, but not clean):
/// a cron job must not stay green while a plugin traps on every image.
pub const PLUGIN_ERRORS_EXIT: i32 = 4;

/// The exit code of `plan --detailed-exitcode` when the plan has changes, for a CI job
/// that alerts on drift. Terraform uses 2, which is our "bad input", so changes get 5.
pub const CHANGES_EXIT: i32 = 5;

/// The exit code of an apply stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
pub const INTERRUPTED_EXIT: i32 = 130;

/// Bad input from outside (policy, event, plan, journal or state file, plugin): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Why a run stopped before touching anything: exit 3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GuardrailStop(pub String);

/// Another process holds a lock this run needs: exit 1, naming the holder.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Busy(pub String);

/// The exit code for an error: the first cause that carries one decides.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<GuardrailStop>().is_some() {
            return 3;
        }
        if cause.downcast_ref::<InputError>().is_some() || cause.downcast_ref::<crate::model::PluginError>().is_some() {
            return 2;
        }
        if cause.downcast_ref::<Busy>().is_some() {
            return 1;
        }
    }
    1
}
