//! The VRRP shell: sockets, addresses, timers and the stop signal around the sans-IO instances
//! of `halb_vrrp`. One task owns every instance and sync group; receive loops and the link
//! watcher hand it events through a channel, so the state machines never run concurrently.
//! The host is behind [`crate::host`]'s traits.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use halb_sys::{IpFamily, LinkEvent, ReceivedPacket};
use halb_vrrp::packet::{self};
use halb_vrrp::{Action, Dropped, Instance, State, SyncGroup, TrackerStatus};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::dump::{format_vip, DumpInput, DumpKind, InstanceDump, SyncGroupDump};
use crate::event::{EventBus, EventKind, InstanceCounters, InstanceStatus, Vip, VrrpEvent};
use crate::handover::VrrpHandOver;
use crate::host::{self, Addresses, Announce, VrrpSocketIo, VrrpSockets};
use crate::notify::Notifier;
use crate::reload::Apply;
use crate::reload_plan;
use crate::sd_notify::Watchdog;
use crate::track_file::{self, FileValue, Followed, TrackFiles};
use crate::track_script::{self, ScriptResult};
use crate::vip_lease::{self, Leases};
use crate::vrrp_map::{self, MappedInstance, VrrpPlan};
use halb_config::model::{Config, VrrpScript};

/// A packet a receive loop got on socket `socket`.
struct Inbound {
    socket: usize,
    packet: ReceivedPacket,
}

/// One raw socket per interface and family, shared by the instances there.
struct SocketSlot<S> {
    interface: String,
    family: IpFamily,
    /// The multicast groups it joined.
    groups: Vec<IpAddr>,
    socket: Arc<S>,
    /// Indices of the instances that receive on it.
    instances: Vec<usize>,
}

/// One VRRP instance: its state machine, where it lives on this host, and its socket.
struct VrrpInstance {
    machine: Instance,
    mapped: MappedInstance,
    /// Index in [`Shell::sockets`].
    socket: usize,
    /// When the state last changed (or the instance started), for the dumps.
    last_transition: SystemTime,
}

impl VrrpInstance {
    fn name(&self) -> &str {
        &self.machine.config().name
    }
}

struct Shell<H: Addresses + VrrpSockets> {
    instances: Vec<VrrpInstance>,
    sockets: Vec<SocketSlot<H::Socket>>,
    groups: Vec<(SyncGroup, Vec<usize>)>,
    host: Arc<H>,
    announcers: HashMap<String, Arc<dyn Announce>>,
    notifier: Notifier,
    /// What `halb status` and the virtual servers (`ha_suspend`, the sync daemon) see.
    views: watch::Sender<Vec<InstanceStatus>>,
    /// The instances' counters, apart from `views`: they change with every advert, and the
    /// watchers of `views` care for state changes only.
    counters: watch::Sender<Vec<InstanceCounters>>,
    events: EventBus,
    /// The global settings and the `router_id` keepalived's data dump shows.
    global: halb_config::sections::global_defs::GlobalDefs,
    router_id: String,
    dump_dir: std::path::PathBuf,
    /// The VIPs each MASTER holds, renewed before their lifetime runs out.
    leases: Leases,
    /// Where the receive loops of sockets opened by a reload send.
    inbound: mpsc::Sender<Inbound>,
    /// The `vrrp_script`s running, with their tasks (a reload keeps the unchanged ones).
    scripts: Vec<(VrrpScript, tokio::task::JoinHandle<()>)>,
    script_results: mpsc::Sender<ScriptResult>,
    /// The `track_file`s the instances track, followed while they do.
    track_files: TrackFiles,
    followed: Followed,
    file_changes: mpsc::Sender<FileValue>,
}

/// How long a stopping daemon waits for its notify scripts (`notify_stop` gets one second).
const NOTIFY_GRACE: Duration = Duration::from_secs(2);

/// What the VRRP part talks to: the host, and the channels to and from the rest of the
/// daemon (each works from any runtime).
pub struct Part<H> {
    pub host: Arc<H>,
    /// The instances' state, published after every change.
    pub views: watch::Sender<Vec<InstanceStatus>>,
    pub counters: watch::Sender<Vec<InstanceCounters>>,
    /// Where transitions are published.
    pub bus: EventBus,
    pub dumps: crate::DumpRequests,
    /// Fires once every instance has started.
    pub started: oneshot::Sender<()>,
    pub reloads: mpsc::Receiver<Apply>,
    pub handover: VrrpHandOver,
    pub track_files: TrackFiles,
    pub bfd: watch::Receiver<crate::bfd::BfdView>,
}

impl<H: Addresses> Part<H> {
    /// The same part, its host reached through connections this runtime drives.
    pub fn on_this_runtime(self) -> Result<Part<H>> {
        Ok(Part {
            host: H::on_this_runtime(&self.host)?,
            ..self
        })
    }
}

/// Runs the VRRP part of `config` until `stop` completes.
pub async fn run<H: Addresses + VrrpSockets>(
    config: &Config,
    part: Part<H>,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let Part {
        host,
        views,
        counters,
        bus,
        dumps,
        started,
        mut reloads,
        handover,
        track_files,
        mut bfd,
    } = part;
    let dumps = &dumps;
    let VrrpHandOver {
        taking_over,
        mut resume,
        handed_over,
    } = handover;
    let mut stop = std::pin::pin!(stop);
    let mut dump_requests = dumps.subscribe();
    let mut view = host.host_view().await?;
    let (file_changes, mut file_inbox) = mpsc::channel::<FileValue>(64);
    let followed = track_file::follow(&track_files, &track_file::vrrp_files(config), &file_changes);
    view.track_files = followed.values.clone();
    let mut plan: VrrpPlan = vrrp_map::map(config, &view)?;
    plan.instances.iter_mut().for_each(vip_lease::lease_vips);
    for line in &plan.unsupported {
        warn!("{line}");
    }
    if plan.instances.is_empty() {
        warn!("no vrrp_instance in the configuration; nothing to do until stopped");
    }

    // keepalived removes the addresses a killed predecessor left before its first state, so
    // that a BACKUP does not answer for a VIP it does not own. A predecessor handing over is
    // alive, and its VIPs stay.
    for mapped in plan.instances.iter().filter(|_| !taking_over) {
        for (interface, vips) in by_interface(mapped) {
            let vips: Vec<_> = vips.into_iter().cloned().collect();
            match host.remove_leftover_vips(&interface, &vips).await {
                Ok(found) => {
                    for address in found {
                        info!(
                            "({}) removed {address} left on {interface} by a previous run",
                            mapped.config.name
                        );
                    }
                }
                Err(e) => warn!("({}) {e:#}", mapped.config.name),
            }
        }
    }

    let (inbound, mut inbox) = mpsc::channel::<Inbound>(256);
    let (sockets, socket_of) = open_sockets(&*host, &plan.instances, &inbound)?;
    let mut announcers: HashMap<String, Arc<dyn Announce>> = HashMap::new();
    // Collected first: a closure's borrow held across the awaits below would keep the
    // future from being `Send`.
    let interfaces: Vec<String> = plan
        .instances
        .iter()
        .flat_map(|m| m.vips.iter().map(|v| v.interface.clone()))
        .collect();
    for interface in interfaces {
        if announcers.contains_key(&interface) {
            continue;
        }
        match host.announcer(&interface).await {
            Ok(a) => {
                announcers.insert(interface, a);
            }
            Err(e) => warn!("no gratuitous ARP on {interface}: {e:#}"),
        }
    }
    let mut link_events = host.link_events().await?;
    let notifier = Notifier::new(config);
    let (script_results, mut script_inbox) = mpsc::channel::<ScriptResult>(64);
    let scripts = plan
        .scripts
        .iter()
        .filter_map(|script| start_script(script, config, &script_results))
        .collect();

    let now = host::now();
    let mut instances: Vec<VrrpInstance> = plan
        .instances
        .into_iter()
        .zip(socket_of)
        .map(|(mapped, socket)| VrrpInstance {
            machine: Instance::new(mapped.config.clone(), now),
            mapped,
            socket,
            last_transition: SystemTime::now(),
        })
        .collect();
    for instance in &instances {
        for w in instance.machine.config_warnings() {
            warn!("({}) {w}", instance.name());
        }
    }
    let groups = plan
        .sync_groups
        .iter()
        .map(|g| {
            let mut members = members_mut(&mut instances, &g.members);
            (
                SyncGroup::new(g.name.clone(), now, &mut members),
                g.members.clone(),
            )
        })
        .collect();

    let mut shell = Shell {
        instances,
        sockets,
        groups,
        host,
        announcers,
        notifier,
        views,
        counters,
        events: bus,
        global: config.global.clone(),
        router_id: config.global.router_id.clone().unwrap_or_else(host_name),
        dump_dir: dumps.dir().to_path_buf(),
        leases: Leases::default(),
        inbound,
        scripts,
        script_results,
        track_files,
        followed,
        file_changes,
    };
    shell.settle(host::now()).await;
    let _ = started.send(());
    // A process taking over pings once it is the main process (systemd would refuse the pings
    // of another one); the one it replaces pings until it lets go.
    let mut watchdog = if taking_over {
        Watchdog::off()
    } else {
        Watchdog::from_env()
    };
    let mut took_over = false;

    loop {
        let deadline = shell
            .instances
            .iter()
            .filter_map(|i| i.machine.poll_timeout())
            .chain(shell.leases.poll_timeout())
            .min();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => {
                if handed_over.load(Ordering::SeqCst) {
                    // The new process advertises from now on; VIPs stay for it.
                    info!("Handing over: VRRP stops here, VIPs stay");
                    return Ok(());
                }
                info!("Stopping");
                break;
            }
            Some(names) = resume.recv() => {
                shell.resume_masters(&names);
                watchdog = Watchdog::from_env();
                // Once the transitions are out (settled below): systemd's first STATUS=
                // from this process shows the MASTER it now is.
                took_over = true;
            }
            // Here rather than on a task of its own: a wedged VRRP loop must stop the pings.
            () = watchdog.due() => { watchdog.ping(); continue; }
            Some(Inbound { socket, packet }) = inbox.recv() => shell.handle_packet(socket, &packet),
            Some(result) = script_inbox.recv() => shell.handle_script(&result),
            Some(change) = file_inbox.recv() => shell.handle_file(&change),
            Ok(()) = bfd.changed() => {
                let view = bfd.borrow_and_update().clone();
                shell.handle_bfd(&view);
            }
            Some(event) = link_events.recv() => shell.handle_link(&event),
            request = dump_requests.recv() => match request {
                Ok(kind) => shell.dump(kind),
                // Several signals at once: one dump of each kind is enough.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
            Some(apply) = reloads.recv() => {
                let result = shell.reload(&apply.config).await;
                let _ = apply.done.send(result);
                // A track_bfd line the reload added starts down (as in keepalived); it hears
                // its session's state now rather than at the next change.
                let view = bfd.borrow().clone();
                shell.handle_bfd(&view);
            }
            () = sleep => {
                let now = host::now();
                for instance in &mut shell.instances {
                    let machine = &mut instance.machine;
                    if machine.poll_timeout().is_some_and(|at| at <= now) {
                        // A BACKUP's only timer is Master_Down_Timer (the GARP ones are a
                        // MASTER's): vrrp_scheduler.c `vrrp_dispatcher_read_timeout`.
                        if machine.state() == State::Backup {
                            info!("({}) Receive advertisement timeout", machine.config().name);
                        }
                        machine.handle_timeout(now);
                    }
                }
                shell.renew_leases(now).await;
            }
        }
        shell.settle(host::now()).await;
        if std::mem::take(&mut took_over) {
            shell
                .events
                .publish(EventKind::Daemon(crate::event::DaemonEvent::TookOver));
        }
    }

    let now = host::now();
    for instance in &mut shell.instances {
        instance.machine.shutdown(now);
    }
    shell.settle(now).await;
    // keepalived's `notify_shutdown`: every sync group reports STOP after its members.
    for (g, (group, _)) in shell.groups.iter().enumerate() {
        shell.notifier.group(g, group.name(), State::Stopped);
    }
    // Belt and braces: whatever state an instance was in, none of its addresses stays.
    for instance in &shell.instances {
        for (interface, vips) in by_interface(&instance.mapped) {
            let addresses: Vec<IpAddr> = vips.iter().map(|v| v.address).collect();
            if let Err(e) = shell.host.remove_addresses(&interface, &addresses).await {
                warn!("({}) {e:#}", instance.name());
            }
        }
    }
    shell.notifier.finish(NOTIFY_GRACE).await;
    Ok(())
}

/// keepalived's fallback for `router_id`: the host name (uname's nodename).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

/// The VIPs of an instance grouped by the interface they go on.
fn by_interface(mapped: &MappedInstance) -> BTreeMap<String, Vec<&halb_sys::VirtualAddress>> {
    let mut by: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for placed in &mapped.vips {
        by.entry(placed.interface.clone())
            .or_default()
            .push(&placed.vip);
    }
    by
}

/// The sockets, and for each instance the index of its socket.
type OpenedSockets<S> = (Vec<SocketSlot<S>>, Vec<usize>);

/// Opens one socket per (interface, family), joining every group an instance there uses, and
/// starts its receive loop.
fn open_sockets<S: VrrpSockets>(
    host: &S,
    instances: &[MappedInstance],
    inbound: &mpsc::Sender<Inbound>,
) -> Result<OpenedSockets<S::Socket>> {
    open_sockets_at(host, instances, inbound, 0)
}

/// [`open_sockets`] for sockets that will sit at `base` and after in the shell's list (their
/// receive loops tag packets with that index).
fn open_sockets_at<S: VrrpSockets>(
    host: &S,
    instances: &[MappedInstance],
    inbound: &mpsc::Sender<Inbound>,
    base: usize,
) -> Result<OpenedSockets<S::Socket>> {
    let mut keys: Vec<(String, IpFamily)> = Vec::new();
    let mut socket_of = Vec::with_capacity(instances.len());
    for m in instances {
        let key = (m.interface.clone(), m.family);
        let index = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
            keys.push(key);
            keys.len() - 1
        });
        socket_of.push(index);
    }
    let mut slots = Vec::with_capacity(keys.len());
    for (index, (interface, family)) in keys.iter().enumerate() {
        let members: Vec<usize> = (0..instances.len())
            .filter(|&n| socket_of[n] == index)
            .collect();
        let mut groups: Vec<IpAddr> = Vec::new();
        for &n in &members {
            if let Some(g) = instances[n].multicast_group {
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
        }
        let socket = Arc::new(host.open(interface, *family, &groups)?);
        let receiver = Arc::clone(&socket);
        let inbound = inbound.clone();
        tokio::spawn(async move {
            loop {
                match receiver.recv().await {
                    Ok(packet) => {
                        if inbound
                            .send(Inbound {
                                socket: base + index,
                                packet,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        debug!("{e:#}");
                        // A persistent error must not spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        slots.push(SocketSlot {
            interface: interface.clone(),
            family: *family,
            groups,
            socket,
            instances: members,
        });
    }
    Ok((slots, socket_of))
}

/// Starts a `vrrp_script`, unless its user cannot be found (keepalived disables such a script;
/// its instances keep waiting for it).
fn start_script(
    script: &VrrpScript,
    config: &Config,
    results: &mpsc::Sender<ScriptResult>,
) -> Option<(VrrpScript, tokio::task::JoinHandle<()>)> {
    match crate::process::resolve_user(&script.script, &config.global) {
        Ok(run_as) => Some((
            script.clone(),
            track_script::spawn(script.clone(), run_as, results.clone()),
        )),
        Err(e) => {
            error!("VRRP_Script({}) not run: {e:#}", script.name);
            None
        }
    }
}

/// The members of a sync group, in the order `SyncGroup` expects (ascending indices).
fn members_mut<'a>(instances: &'a mut [VrrpInstance], members: &[usize]) -> Vec<&'a mut Instance> {
    instances
        .iter_mut()
        .enumerate()
        .filter(|(n, _)| members.contains(n))
        .map(|(_, i)| &mut i.machine)
        .collect()
}

impl<H: Addresses + VrrpSockets> Shell<H> {
    /// A reload: instances the new file continues ([`reload_plan::match_instances`]) keep
    /// their state machine and take the new settings; removed ones stop as at shutdown (their
    /// own addresses only); new ones start as at start. Refused, with nothing changed, when
    /// the new file cannot run here (an interface that is not there). Returns one line per
    /// change.
    async fn reload(&mut self, config: &Config) -> Result<Vec<String>, String> {
        let mut view = self.host.host_view().await.map_err(|e| format!("{e:#}"))?;
        // Followed before the old ones are let go: a file both track stays watched.
        let followed = track_file::follow(
            &self.track_files,
            &track_file::vrrp_files(config),
            &self.file_changes,
        );
        view.track_files = followed.values.clone();
        let mut plan = vrrp_map::map(config, &view).map_err(|e| e.to_string())?;
        plan.instances.iter_mut().for_each(vip_lease::lease_vips);
        // The data dump shows the global settings of the file now running.
        self.global = config.global.clone();
        self.router_id = config.global.router_id.clone().unwrap_or_else(host_name);
        for line in &plan.unsupported {
            warn!("{line}");
        }
        let old: Vec<MappedInstance> = self.instances.iter().map(|i| i.mapped.clone()).collect();
        let matches = reload_plan::match_instances(&old, &plan.instances);
        let removed = reload_plan::removed_instances(&matches, old.len());
        // New sockets first: the one step that may fail, before anything changed.
        let mut socket_of = Vec::with_capacity(plan.instances.len());
        for mapped in &plan.instances {
            socket_of.push(self.socket_for(mapped).map_err(|e| format!("{e:#}"))?);
        }
        let mut lines = Vec::new();
        let now = host::now();
        for &n in &removed {
            let name = self.instances[n].name().to_string();
            self.instances[n].machine.shutdown(now);
            while let Some(action) = self.instances[n].machine.poll_action() {
                self.carry_out(n, action).await;
            }
            self.notifier.instance(n, &name, State::Stopped, 0);
            lines.push(format!("({name}) removed from the configuration: stopped"));
        }
        let mut previous: Vec<Option<VrrpInstance>> = std::mem::take(&mut self.instances)
            .into_iter()
            .map(Some)
            .collect();
        let mut final_mapping = Vec::with_capacity(plan.instances.len());
        for ((mapped, matched), socket) in plan
            .instances
            .into_iter()
            .zip(matches.iter().copied())
            .zip(socket_of)
        {
            let name = mapped.config.name.clone();
            let kept = matched.and_then(|o| previous.get_mut(o).and_then(Option::take));
            let instance = match kept {
                Some(mut instance) => {
                    // A tracked file's new weight first, as one change: the reconfiguration
                    // keeps a tracker's last result, which must already be the new one.
                    for t in &mapped.config.trackers {
                        if mapped
                            .files
                            .iter()
                            .any(|(f, _)| vrrp_map::file_tracker_name(f) == t.name)
                        {
                            instance
                                .machine
                                .set_tracker(now, &t.name, t.weight, t.initial);
                        }
                    }
                    let (changes, warnings) =
                        instance.machine.reconfigure(now, mapped.config.clone());
                    for w in warnings {
                        warn!("({name}) {w}");
                    }
                    for address in &changes.added {
                        lines.push(format!("({name}) virtual address {address} added"));
                    }
                    for address in &changes.removed {
                        lines.push(format!("({name}) virtual address {address} removed"));
                    }
                    if instance.mapped.config != mapped.config && changes == Default::default() {
                        lines.push(format!("({name}) settings changed"));
                    }
                    // Until the actions of the change are carried out, the removed addresses
                    // must still be found where they are.
                    let mut both = mapped.clone();
                    both.vips.extend(
                        instance
                            .mapped
                            .vips
                            .iter()
                            .filter(|p| changes.removed.contains(&p.vip.address))
                            .cloned(),
                    );
                    instance.mapped = both;
                    instance.socket = socket;
                    instance
                }
                None => {
                    lines.push(format!("({name}) added"));
                    let instance = VrrpInstance {
                        machine: Instance::new(mapped.config.clone(), now),
                        mapped: mapped.clone(),
                        socket,
                        last_transition: SystemTime::now(),
                    };
                    for w in instance.machine.config_warnings() {
                        warn!("({name}) {w}");
                    }
                    instance
                }
            };
            self.instances.push(instance);
            final_mapping.push(mapped);
        }
        // The addresses a kept MASTER holds are renewed under its new index.
        self.leases
            .renumber(|o| matches.iter().position(|&m| m == Some(o)));
        for (n, slot) in self.sockets.iter_mut().enumerate() {
            slot.instances = (0..self.instances.len())
                .filter(|&i| self.instances[i].socket == n)
                .collect();
        }
        self.reload_groups(&plan.sync_groups, &matches, now);
        self.reload_scripts(&plan.scripts, config, &mut lines);
        // A kept instance kept its trackers' last results; a file's value is known, and
        // holds with the new weights.
        self.followed = followed;
        let now_files = host::now();
        for (instance, mapped) in self.instances.iter_mut().zip(&final_mapping) {
            for (name, tracking) in &mapped.files {
                let value = self.followed.values.get(name).copied().unwrap_or(0);
                let (weight, status) = vrrp_map::file_tracker(value, *tracking);
                instance.machine.set_tracker(
                    now_files,
                    &vrrp_map::file_tracker_name(name),
                    weight,
                    status,
                );
            }
        }
        self.notifier.reconfigure(config);
        let interfaces: Vec<String> = final_mapping
            .iter()
            .flat_map(|m| m.vips.iter().map(|v| v.interface.clone()))
            .collect();
        for interface in interfaces {
            if !self.announcers.contains_key(&interface) {
                match self.host.announcer(&interface).await {
                    Ok(a) => {
                        self.announcers.insert(interface, a);
                    }
                    Err(e) => warn!("no gratuitous ARP on {interface}: {e:#}"),
                }
            }
        }
        self.settle(now).await;
        for (instance, mapped) in self.instances.iter_mut().zip(final_mapping) {
            instance.mapped = mapped;
        }
        self.publish();
        Ok(lines)
    }

    /// The socket for `mapped`'s interface and family, opened if no instance used it yet.
    fn socket_for(&mut self, mapped: &MappedInstance) -> Result<usize> {
        if let Some(n) = self
            .sockets
            .iter()
            .position(|s| s.interface == mapped.interface && s.family == mapped.family)
        {
            if let Some(group) = mapped.multicast_group {
                if !self.sockets[n].groups.contains(&group) {
                    warn!(
                        "({}) multicast group {group} on {} takes effect at the next restart",
                        mapped.config.name, mapped.interface
                    );
                }
            }
            return Ok(n);
        }
        let index = self.sockets.len();
        let (opened, _) = open_sockets_at(
            &*self.host,
            std::slice::from_ref(mapped),
            &self.inbound,
            index,
        )?;
        self.sockets.extend(opened);
        Ok(index)
    }

    /// Sync groups whose members are the same instances keep their state; others are formed
    /// anew from their members.
    fn reload_groups(
        &mut self,
        groups: &[vrrp_map::MappedSyncGroup],
        previous_index: &[Option<usize>],
        now: Instant,
    ) {
        let old = std::mem::take(&mut self.groups);
        for g in groups {
            let same = old.iter().position(|(group, members)| {
                group.name() == g.name
                    && members.len() == g.members.len()
                    && g.members
                        .iter()
                        .zip(members)
                        .all(|(&new, &was)| previous_index.get(new) == Some(&Some(was)))
            });
            let group = match same {
                Some(i) => old[i].0.clone(),
                None => {
                    let mut members = members_mut(&mut self.instances, &g.members);
                    SyncGroup::new(g.name.clone(), now, &mut members)
                }
            };
            self.groups.push((group, g.members.clone()));
        }
    }

    /// Scripts that did not change keep running (and their results stand); changed ones are
    /// restarted, removed ones stopped.
    fn reload_scripts(&mut self, scripts: &[VrrpScript], config: &Config, lines: &mut Vec<String>) {
        let mut running = std::mem::take(&mut self.scripts);
        for script in scripts {
            match running.iter().position(|(s, _)| s == script) {
                Some(i) => self.scripts.push(running.swap_remove(i)),
                None => {
                    lines.push(format!("VRRP_Script({}) started", script.name));
                    if let Some(started) = start_script(script, config, &self.script_results) {
                        self.scripts.push(started);
                    }
                }
            }
        }
        for (script, task) in running {
            lines.push(format!("VRRP_Script({}) stopped", script.name));
            task.abort();
        }
    }

    fn handle_packet(&mut self, socket: usize, packet: &ReceivedPacket) {
        let Some(vrid) = packet::peek_vrid(&packet.message) else {
            debug!("short VRRP packet from {} ignored", packet.src());
            return;
        };
        let Some(slot) = self.sockets.get(socket) else {
            return;
        };
        let Some(&n) = slot
            .instances
            .iter()
            .find(|&&n| self.instances[n].machine.config().vrid == vrid)
        else {
            debug!(
                "advert for VRID {vrid} from {} on {}: no instance",
                packet.src(),
                slot.socket.interface()
            );
            return;
        };
        let instance = &mut self.instances[n].machine;
        let name = instance.config().name.clone();
        let now = host::now();
        match instance.handle_packet(now, &packet.message, &packet.context()) {
            Ok(()) => {
                // vrrp.c `vrrp_state_backup`: a master that leaves says so with priority 0.
                if instance.state() == State::Backup && packet.message.get(2) == Some(&0) {
                    info!("({name}) Backup received priority 0 advertisement");
                }
            }
            Err(Dropped::NotListening { .. } | Dropped::Stopped) => {}
            Err(dropped @ Dropped::LowerPriority { .. }) => info!("({name}) {dropped}"),
            Err(dropped) => warn!("({name}) {dropped} (from {})", packet.src()),
        }
    }

    /// Writes keepalived's dump `kind` (SIGUSR1, SIGUSR2, the JSON signal).
    fn dump(&self, kind: DumpKind) {
        info!("{}", kind.log_line());
        let input = self.dump_input();
        match crate::dump::write(&self.dump_dir, kind, &input) {
            Ok(path) => debug!("wrote {}", path.display()),
            // keepalived's words (vrrp_print.c): the daemon goes on.
            Err(e) => warn!("Can't open dump file {}: {e:#}", kind.file_name()),
        }
    }

    fn dump_input(&self) -> DumpInput {
        let now = host::now();
        let wall = SystemTime::now();
        let group_of = |n: usize| {
            self.groups
                .iter()
                .find(|(_, members)| members.contains(&n))
                .map(|(g, _)| g.name().to_string())
        };
        let instances = self
            .instances
            .iter()
            .enumerate()
            .map(|(n, i)| {
                let m = &i.machine;
                let c = m.config();
                let state = m.state();
                let set = state == State::Master;
                let (vips, excluded): (Vec<_>, Vec<_>) = i
                    .mapped
                    .vips
                    .iter()
                    .partition(|p| !c.excluded_addresses.contains(&p.vip.address));
                InstanceDump {
                    name: c.name.clone(),
                    version: match c.version {
                        packet::Version::V2 => 2,
                        packet::Version::V3 => 3,
                    },
                    sync_group: group_of(n),
                    state,
                    wantstate: match state {
                        State::Initialize => match c.initial_state {
                            halb_vrrp::InitialState::Master => State::Master,
                            halb_vrrp::InitialState::Backup => State::Backup,
                        },
                        s => s,
                    },
                    master: m.last_master(),
                    master_adver_int: m.master_adver_int(),
                    last_transition: i.last_transition,
                    read_timeout: m
                        .poll_timeout()
                        .map(|at| wall + at.saturating_duration_since(now)),
                    master_down_timer: m.master_down_interval(),
                    interface: i.mapped.interface.clone(),
                    source_address: c.source_address,
                    multicast_group: i.mapped.multicast_group,
                    unicast_peers: c.unicast_peers.clone(),
                    check_unicast_source: c.check_unicast_source,
                    garp: c.garp.clone(),
                    down_timer_adverts: c.down_timer_adverts,
                    lower_prio_no_advert: c.lower_prio_no_advert,
                    higher_prio_send_advert: c.higher_prio_send_advert,
                    vrid: c.vrid,
                    priority: m.base_priority(),
                    effective_priority: m.effective_priority(),
                    advert_interval: c.advert_interval,
                    preempt: c.preempt,
                    preempt_delay: c.preempt_delay,
                    auth: c.auth,
                    vips: vips
                        .iter()
                        .map(|p| format_vip(&p.vip, &p.interface, set))
                        .collect(),
                    excluded_vips: excluded
                        .iter()
                        .map(|p| format_vip(&p.vip, &p.interface, set))
                        .collect(),
                    vips_set: set,
                    stats: *m.stats(),
                }
            })
            .collect();
        let sync_groups = self
            .groups
            .iter()
            .map(|(group, members)| {
                let states: Vec<State> = members
                    .iter()
                    .map(|&n| self.instances[n].machine.state())
                    .collect();
                SyncGroupDump {
                    name: group.name().to_string(),
                    state: group.state(),
                    members: members
                        .iter()
                        .map(|&n| self.instances[n].name().to_string())
                        .collect(),
                    members_fault: states.iter().filter(|&&s| s == State::Fault).count(),
                    members_init: states.iter().filter(|&&s| s == State::Initialize).count(),
                }
            })
            .collect();
        DumpInput {
            global: self.global.clone(),
            router_id: self.router_id.clone(),
            instances,
            sync_groups,
        }
    }

    fn handle_link(&mut self, event: &LinkEvent) {
        info!(
            "Netlink reports {} {}",
            event.interface,
            if event.up { "up" } else { "down" }
        );
        let now = host::now();
        for VrrpInstance {
            machine: instance,
            mapped,
            ..
        } in &mut self.instances
        {
            if mapped.interface == event.interface {
                instance.set_interface_up(now, event.up);
            }
            if instance
                .config()
                .trackers
                .iter()
                .any(|t| t.name == event.interface)
            {
                let status = if event.up {
                    TrackerStatus::Up
                } else {
                    TrackerStatus::Down
                };
                instance.set_tracker_status(now, &event.interface, status);
            }
        }
    }

    /// The BFD sessions changed: every instance tracking one hears of its state.
    fn handle_bfd(&mut self, view: &crate::bfd::BfdView) {
        let now = host::now();
        for session in view.sessions.iter().filter(|s| s.vrrp) {
            let name = crate::track_bfd::tracker_name(&session.name);
            let status = if session.up {
                TrackerStatus::Up
            } else {
                TrackerStatus::Down
            };
            for instance in &mut self.instances {
                instance.machine.set_tracker_status(now, &name, status);
            }
        }
    }

    /// A `vrrp_script` changed state: every instance tracking it hears of it.
    fn handle_script(&mut self, result: &ScriptResult) {
        let now = host::now();
        let status = if result.up {
            TrackerStatus::Up
        } else {
            TrackerStatus::Down
        };
        for instance in &mut self.instances {
            instance
                .machine
                .set_tracker_status(now, &result.name, status);
        }
    }

    /// A `track_file`'s value changed: every instance tracking it hears what it means for
    /// it.
    fn handle_file(&mut self, change: &FileValue) {
        let now = host::now();
        for instance in &mut self.instances {
            for (name, tracking) in &instance.mapped.files {
                if *name != change.name {
                    continue;
                }
                let (weight, status) = vrrp_map::file_tracker(change.value, *tracking);
                instance.machine.set_tracker(
                    now,
                    &vrrp_map::file_tracker_name(name),
                    weight,
                    status,
                );
            }
        }
    }

    /// Lets the sync groups move their members, then carries out every action.
    async fn settle(&mut self, now: Instant) {
        for (g, (group, members)) in self.groups.iter_mut().enumerate() {
            let before = group.state();
            let mut refs = members_mut(&mut self.instances, members);
            group.synchronize(now, &mut refs);
            if group.state() != before
                && matches!(group.state(), State::Master | State::Backup | State::Fault)
            {
                self.events.publish(EventKind::Vrrp(VrrpEvent::GroupSynced {
                    group: group.name().to_string(),
                    state: group.state(),
                }));
                self.notifier.group(g, group.name(), group.state());
            }
        }
        for n in 0..self.instances.len() {
            while let Some(action) = self.instances[n].machine.poll_action() {
                self.carry_out(n, action).await;
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let views: Vec<InstanceStatus> = self
            .instances
            .iter()
            .map(
                |VrrpInstance {
                     machine: instance,
                     mapped,
                     ..
                 }| InstanceStatus {
                    name: instance.config().name.clone(),
                    interface: mapped.interface.clone(),
                    vrid: instance.config().vrid,
                    state: instance.state(),
                    priority: instance.base_priority(),
                    effective_priority: instance.effective_priority(),
                    vips: mapped
                        .vips
                        .iter()
                        .map(|p| Vip {
                            address: p.vip.address,
                            prefix_len: p.vip.prefix_len,
                        })
                        .collect(),
                    last_master: instance.last_master(),
                },
            )
            .collect();
        let counters: Vec<InstanceCounters> = self
            .instances
            .iter()
            .map(|i| InstanceCounters {
                name: i.name().to_string(),
                stats: *i.machine.stats(),
            })
            .collect();
        self.counters.send_if_modified(|old| {
            if *old == counters {
                false
            } else {
                *old = counters;
                true
            }
        });
        self.views.send_if_modified(|old| {
            if *old == views {
                false
            } else {
                *old = views;
                true
            }
        });
    }

    async fn carry_out(&mut self, n: usize, action: Action) {
        let instance = &self.instances[n];
        let name = instance.name().to_string();
        let ours = instance.machine.effective_priority();
        let mapped = &instance.mapped;
        match action {
            Action::SendAdvert { advert, src, dst } => {
                let slot = &self.sockets[instance.socket];
                if let Err(e) = slot.socket.send_advert(&advert, src, dst).await {
                    warn!("({name}) {e:#}");
                } else if advert.priority == 0 {
                    info!("({name}) sent 0 priority");
                }
            }
            Action::AddVips { addresses } => {
                info!("({name}) setting VIPs.");
                let lifetime = vip_lease::lifetime(instance.machine.config().advert_interval);
                self.leases
                    .added(n, &addresses, vip_lease::renew_every(lifetime), host::now());
                for placed in mapped
                    .vips
                    .iter()
                    .filter(|p| addresses.contains(&p.vip.address))
                {
                    if let Err(e) = self.host.add_address(&placed.interface, &placed.vip).await {
                        error!("({name}) {e:#}");
                    }
                }
            }
            Action::RemoveVips { addresses } => {
                info!("({name}) removing VIPs.");
                self.leases.removed(n, &addresses);
                for (interface, vips) in by_interface(mapped) {
                    let remove: Vec<IpAddr> = vips
                        .iter()
                        .map(|v| v.address)
                        .filter(|a| addresses.contains(a))
                        .collect();
                    if let Err(e) = self.host.remove_addresses(&interface, &remove).await {
                        error!("({name}) {e:#}");
                    }
                }
            }
            Action::SendGratuitousArp { addresses, repeat } => {
                self.announce(n, &name, &addresses, repeat);
            }
            Action::StateChange(change) => {
                self.instances[n].last_transition = SystemTime::now();
                let to = change.to;
                self.events.publish(EventKind::Vrrp(VrrpEvent::Transition {
                    instance: name.clone(),
                    change,
                    priority: ours,
                }));
                self.notifier.instance(n, &name, to, ours);
            }
            Action::PriorityChange { from, to } => {
                self.events
                    .publish(EventKind::Vrrp(VrrpEvent::PriorityChanged {
                        instance: name,
                        from,
                        to,
                    }));
            }
            Action::MasterReceivedLowerPriority { from, priority } => {
                info!("({name}) Received advert from {from} with lower priority {priority}, ours {ours}");
            }
        }
    }

    /// The previous process let go of these instances' MASTER role: they take it at once.
    fn resume_masters(&mut self, names: &[String]) {
        let now = host::now();
        for instance in &mut self.instances {
            if names.iter().any(|n| n == instance.name()) {
                instance.machine.resume_master(now);
            }
        }
    }

    /// Renews the lifetime of the VIPs that are due (see [`crate::vip_lease`]).
    async fn renew_leases(&mut self, now: Instant) {
        for (n, addresses) in self.leases.due(now) {
            let instance = &self.instances[n];
            for placed in instance
                .mapped
                .vips
                .iter()
                .filter(|p| addresses.contains(&p.vip.address))
            {
                if let Err(e) = self
                    .host
                    .refresh_address(&placed.interface, &placed.vip)
                    .await
                {
                    error!("({}) {e:#}", instance.name());
                }
            }
        }
    }

    /// Gratuitous ARPs / unsolicited NAs, `repeat` rounds over the addresses; paced by
    /// `garp_interval` on a task of their own when it is not zero.
    fn announce(&self, n: usize, name: &str, addresses: &[IpAddr], repeat: u32) {
        let mapped = &self.instances[n].mapped;
        let mut jobs: Vec<(Arc<dyn Announce>, String, IpAddr)> = Vec::new();
        for placed in mapped
            .vips
            .iter()
            .filter(|p| addresses.contains(&p.vip.address))
        {
            let interface = &placed.interface;
            let address = placed.vip.address;
            info!(
                "({name}) Sending/queueing {} on {interface} for {address}",
                if address.is_ipv4() {
                    "gratuitous ARPs"
                } else {
                    "Unsolicited Neighbour Adverts"
                }
            );
            if let Some(a) = self.announcers.get(interface) {
                jobs.push((Arc::clone(a), interface.clone(), address));
            }
        }
        let interval = mapped.garp_interval;
        let send_all = move |jobs: &[(Arc<dyn Announce>, String, IpAddr)]| {
            for (announcer, interface, address) in jobs {
                let kind = if address.is_ipv4() {
                    "gratuitous ARP"
                } else {
                    "unsolicited Neighbour Advert"
                };
                match announcer.announce(*address) {
                    Ok(()) => info!("Sending {kind} on {interface} for {address}"),
                    Err(e) => warn!("{e:#}"),
                }
            }
        };
        if interval.is_zero() {
            for _ in 0..repeat {
                send_all(&jobs);
            }
        } else {
            tokio::spawn(async move {
                for round in 0..repeat {
                    if round > 0 {
                        tokio::time::sleep(interval).await;
                    }
                    send_all(&jobs);
                }
            });
        }
    }
}
