//! TCP_CHECK: the connection is the check.

use super::net::{Step, Target};
use super::{ProbeOk, ProbeResult};

/// Connects and closes at once, as keepalived does.
pub async fn check(target: &Target) -> ProbeResult {
    let step = Step::new("connecting to");
    target
        .within_deadline(&step, async {
            let stream = target.tcp().await?;
            drop(stream);
            Ok(ProbeOk::new(format!(
                "TCP connection to {} success",
                target.peer()
            )))
        })
        .await
}
