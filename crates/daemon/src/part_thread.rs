//! A part of the daemon on an OS thread of its own, with a current-thread tokio runtime,
//! scheduled as keepalived schedules that part's process (`vrrp_rt_priority`, `vrrp_priority`,
//! `vrrp_cpu_affinity`, `vrrp_rlimit_rttime`; the same for `bfd_*`).
//!
//! keepalived runs VRRP and BFD in processes of their own, so a busy checker or data plane
//! never delays an advert. halb's userspace proxy relays on the daemon's multi-threaded
//! runtime: a VRRP loop among them would wait for a turn behind relay work, and on a
//! saturated director its adverts would go out late enough for the BACKUP to take over. On a
//! thread of its own the part waits only for the kernel's scheduler, which
//! `*_rt_priority` can then put ahead of everything else.

use std::future::Future;
use std::sync::Mutex;

use anyhow::Context;
use halb_config::model::Scheduling;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

/// Runs the future `part` makes on a new thread named `name` (shown by `top -H` and in
/// `/proc/PID/task/*/comm`; at most 15 bytes), scheduled by `scheduling` (`label` names the
/// keywords in log lines: `vrrp`, `bfd`). The receiver gets the part's output; it fails when
/// the thread ended without one (a panic, or no runtime). The tasks the part spawned end with
/// it.
pub fn spawn<T, F, Fut>(
    name: &str,
    label: &'static str,
    scheduling: Scheduling,
    part: F,
) -> anyhow::Result<oneshot::Receiver<T>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let (done, output) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            apply(label, &scheduling);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    error!("the {label} thread cannot start its runtime: {e}");
                    return;
                }
            };
            let _ = done.send(runtime.block_on(part()));
            // Receive loops, paced gratuitous ARPs and the like end here, not the process's
            // exit: nothing waits for them.
            runtime.shutdown_background();
        })
        .with_context(|| format!("starting the {label} thread"))?;
    Ok(output)
}

/// What to tell an operator whose setting the kernel refused for lack of privilege.
const PRIVILEGE_HINT: &str = "it needs CAP_SYS_NICE (under systemd, RestrictRealtime=no and \
                              CAP_SYS_NICE in CapabilityBoundingSet= and AmbientCapabilities=)";

/// Applies `scheduling` to the calling thread, logging what it did; a setting the kernel
/// refuses is logged with the reason, and the part runs without it.
pub fn apply(label: &str, scheduling: &Scheduling) {
    if scheduling.is_default() {
        return;
    }
    let tid = thread_id();
    if !scheduling.cpu_affinity.is_empty() {
        let cpus: Vec<String> = scheduling.cpu_affinity.iter().map(u16::to_string).collect();
        let cpus = cpus.join(" ");
        match set_affinity(tid, &scheduling.cpu_affinity) {
            Ok(()) => info!("{label} thread bound to CPU {cpus} ({label}_cpu_affinity)"),
            Err(e) => warn!(
                "cannot bind the {label} thread to CPU {cpus} ({label}_cpu_affinity): {e}; \
                 it runs on any CPU"
            ),
        }
    }
    // SCHED_RESET_ON_FORK, as keepalived: the scripts and helper threads this thread starts
    // run at the normal priority, not ahead of VRRP (nor with its negative nice value).
    match scheduling.rt_priority {
        Some(priority) => {
            match set_scheduler(tid, libc::SCHED_RR, i32::from(priority)) {
                Ok(()) => info!(
                    "{label} thread at real-time priority {priority} (SCHED_RR, \
                     {label}_rt_priority)"
                ),
                Err(e) => warn!(
                    "cannot give the {label} thread real-time priority {priority} \
                     ({label}_rt_priority, SCHED_RR): {e}; {}; it runs at the normal priority",
                    hint(&e)
                ),
            }
            if let Some(nice) = scheduling.nice {
                info!(
                    "{label}_priority {nice} is not applied with {label}_rt_priority, as in \
                     keepalived"
                );
            }
        }
        None => {
            if let Some(nice) = scheduling.nice {
                let applied = set_scheduler(tid, libc::SCHED_OTHER, 0)
                    .and_then(|()| set_nice(tid, i32::from(nice)));
                match applied {
                    Ok(()) => info!("{label} thread at nice {nice} ({label}_priority)"),
                    Err(e) => warn!(
                        "cannot give the {label} thread nice value {nice} ({label}_priority): \
                         {e}; {}; it runs at the normal priority",
                        hint(&e)
                    ),
                }
            }
        }
    }
}

fn hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        PRIVILEGE_HINT
    } else {
        "the kernel refused it"
    }
}

/// The RLIMIT_RTTIME halb set, in µs.
static RT_TIME_LIMIT: Mutex<Option<u64>> = Mutex::new(None);

/// Sets RLIMIT_RTTIME, the CPU time a real-time thread may take without blocking, to the
/// largest of the parts' `*_rlimit_rttime` (keepalived's default 10 ms for a part with
/// `*_rt_priority`); nothing without one. As keepalived: SIGXCPU (logged) at half of it,
/// SIGKILL from the kernel at all of it. The limit is the process's, and a lower one would
/// kill a part that was allowed more. Call on the main runtime, before the parts start.
pub fn limit_rt_time(parts: &[&Scheduling]) {
    let Some(limit) = parts
        .iter()
        .filter_map(|s| s.effective_rlimit_rttime_us())
        .max()
    else {
        return;
    };
    let mut set = RT_TIME_LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    if *set == Some(limit) {
        return;
    }
    // Replaces the default action of SIGXCPU (ending the process) by a log line.
    if set.is_none() {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXCPU))
        {
            Ok(mut received) => {
                tokio::spawn(async move {
                    while received.recv().await.is_some() {
                        warn!(
                            "SIGXCPU: a real-time thread (VRRP or BFD) ran {} µs without \
                             blocking; at {limit} µs the kernel kills halb (*_rlimit_rttime)",
                            limit / 2
                        );
                    }
                });
            }
            Err(e) => {
                warn!("cannot catch SIGXCPU ({e}); RLIMIT_RTTIME left as it is");
                return;
            }
        }
    }
    let rlimit = libc::rlimit {
        rlim_cur: limit / 2,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_RTTIME, &rlimit) } == 0 {
        info!("RLIMIT_RTTIME {limit} µs (soft {} µs)", limit / 2);
        *set = Some(limit);
    } else {
        warn!(
            "cannot set RLIMIT_RTTIME to {limit} µs: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn thread_id() -> libc::pid_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

fn set_scheduler(tid: libc::pid_t, policy: libc::c_int, priority: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: the parameter lives across the call; on Linux the id is a thread's.
    let r = unsafe { libc::sched_setscheduler(tid, policy | libc::SCHED_RESET_ON_FORK, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_nice(tid: libc::pid_t, nice: i32) -> std::io::Result<()> {
    // SAFETY: plain integers; on Linux PRIO_PROCESS with a thread id sets that thread only.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_affinity(tid: libc::pid_t, cpus: &[u16]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain bits; CPU_SET is given indices below CPU_SETSIZE (the
    // configuration allows 0..=1023).
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(usize::from(cpu), &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling of thread `tid` of this process: (policy, rt priority, nice), from
    /// `/proc/self/task/TID/stat` (fields 19, 40 and 41).
    fn scheduling_of(tid: libc::pid_t) -> (u32, u32, i32) {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // The command name may hold spaces; the fields after it do not.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // Field 3 (state) is fields[0].
        let field = |n: usize| fields[n - 3];
        (
            field(41).parse().unwrap(),
            field(40).parse().unwrap(),
            field(19).parse().unwrap(),
        )
    }

    #[test]
    fn a_part_runs_on_its_own_thread() {
        let scheduling = Scheduling::default();
        let main = thread_id();
        let output = spawn("halb-test", "test", scheduling, || async {
            tokio::task::yield_now().await;
            (
                thread_id(),
                std::thread::current().name().map(str::to_string),
            )
        })
        .unwrap();
        let (tid, name) = output.blocking_recv().unwrap();
        assert_ne!(tid, main);
        assert_eq!(name.as_deref(), Some("halb-test"));
    }

    #[test]
    fn the_nice_value_and_reset_on_fork_are_the_threads() {
        // The weakest value: raising the nice value needs no privilege, whatever the caller's.
        let scheduling = Scheduling {
            nice: Some(19),
            ..Scheduling::default()
        };
        let callers = scheduling_of(thread_id());
        let output = spawn("halb-test", "test", scheduling, || async {
            let mine = scheduling_of(thread_id());
            // What the threads and processes it starts inherit is reset (for a nice value,
            // a negative one only): the flag is set.
            // SAFETY: plain call about this thread.
            let policy = unsafe { libc::sched_getscheduler(0) };
            (mine, policy)
        })
        .unwrap();
        let ((policy, rt, nice), raw) = output.blocking_recv().unwrap();
        assert_eq!((policy, rt, nice), (0, 0, 19));
        assert_eq!(raw, libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK);
        assert_eq!(
            scheduling_of(thread_id()),
            callers,
            "the caller is untouched"
        );
    }

    #[test]
    fn a_panicking_part_gives_no_output() {
        let output = spawn("halb-test", "test", Scheduling::default(), || async {
            panic!("on purpose");
        })
        .unwrap();
        let output: Result<(), _> = output.blocking_recv();
        assert!(output.is_err());
    }
}
