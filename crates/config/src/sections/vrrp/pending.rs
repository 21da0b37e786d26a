//! Checks that need more than the block being read.
//!
//! keepalived resolves sync group members, finds unused scripts and applies `global_defs`
//! defaults only after the whole file is read, so a `vrrp_sync_group` may name instances
//! defined after it. While reading, halb keeps here what those checks need (names and the
//! places to report at); [`settle`] runs them and empties it.

use std::collections::hash_map::{Entry, HashMap};
use std::collections::HashSet;
use std::net::IpAddr;

use super::model::{VrrpConfig, VrrpInstance, DEFAULT_DOWN_TIMER_ADVERTS};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::sections::global_defs::GlobalDefs;
use crate::source::Span;

/// What the whole-file checks still need. Not part of the model: equal to any other.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    groups: Vec<PendingGroup>,
    /// Every instance read, with its name line (where keepalived's line-less findings go).
    instances: Vec<PendingInstance>,
    /// Where each name is in `instances`: lookups stay constant-time with 20,000 instances.
    by_name: HashMap<String, usize>,
    /// Every `vrrp_script` read, with its name line, for the "not used" check.
    scripts: Vec<(String, Span)>,
    /// The first `vrrp_script` and `track_file` of each name (keepalived resolves a name to
    /// the first), as positions in the model's lists: a tracking line is a lookup, not a scan.
    pub(crate) script_at: FirstByName,
    pub(crate) track_file_at: FirstByName,
    /// The sync groups in the model by name, as positions in `VrrpConfig::sync_groups`.
    sync_group_at: HashMap<String, usize>,
    /// The groups that wait for an instance, by that instance's name.
    waiting_on: HashMap<String, Vec<usize>>,
    /// The groups to look at on the next [`resolve_groups`]: added, or an instance they
    /// wait for was read.
    touched: Vec<usize>,
    /// The instances that joined a group (an instance joins at most one).
    joined: HashSet<String>,
    /// The first instance using each VMAC interface name.
    vmac_users: HashMap<String, String>,
    /// The first keepalived 1.x `lvs_sync_daemon_interface`: (interface, instance), for
    /// `fold_into_global`.
    lvs_sync_daemon: Option<(String, String)>,
    /// The instances read so far by what makes two of them the same VRRP router.
    pub(crate) vrids: VridIndex,
}

/// The first position of each name in a list read in file order.
#[derive(Debug, Clone, Default)]
pub struct FirstByName(HashMap<String, usize>);

impl FirstByName {
    pub fn add(&mut self, name: &str, position: usize) {
        if !self.0.contains_key(name) {
            self.0.insert(name.to_string(), position);
        }
    }

    pub fn get(&self, name: &str) -> Option<usize> {
        self.0.get(name).copied()
    }
}

/// What makes two instances the same VRRP router on the wire, as keepalived's
/// `check_vrid_conflicts` compares them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VridKey {
    Multicast {
        vrid: u8,
        ipv6: bool,
        interface: String,
        group: Option<IpAddr>,
    },
    /// One per peer: two unicast instances conflict when they share any peer.
    Unicast {
        vrid: u8,
        ipv6: bool,
        source: Option<IpAddr>,
        interface: Option<String>,
        peer: IpAddr,
    },
}

/// The first instance read under each [`VridKey`].
#[derive(Debug, Clone, Default)]
pub struct VridIndex(HashMap<VridKey, String>);

impl VridIndex {
    /// The first earlier instance under any of `keys`; records `name` under the keys nobody
    /// had yet.
    pub fn first_of(
        &mut self,
        keys: impl IntoIterator<Item = VridKey>,
        name: &str,
    ) -> Option<String> {
        let mut first = None;
        for key in keys {
            match self.0.entry(key) {
                Entry::Occupied(e) => {
                    first.get_or_insert_with(|| e.get().clone());
                }
                Entry::Vacant(e) => {
                    e.insert(name.to_string());
                }
            }
        }
        first
    }
}

impl PartialEq for Pending {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Debug, Clone)]
struct PendingInstance {
    name: String,
    span: Span,
    /// Its version or strict mode comes from `global_defs`.
    uses_globals: bool,
}

#[derive(Debug, Clone)]
struct PendingGroup {
    name: String,
    /// The `vrrp_sync_group NAME` line.
    span: Span,
    members: Vec<Member>,
    settled: bool,
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    span: Span,
    state: MemberState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    /// Named, but no such instance has been read yet.
    Waiting,
    Joined,
    /// Unknown, or already in another group.
    Rejected,
}

/// Diagnostics when there is somewhere to put them (reading), none when the model is only
/// being completed (`fold_into_global`).
pub struct Report<'a>(pub Option<&'a mut Diagnostics>);

impl Report<'_> {
    pub fn warn(&mut self, span: Span, message: impl Into<String>) -> Option<&mut Diagnostic> {
        self.0.as_deref_mut().map(|d| d.warn(span, message))
    }

    pub fn note(&mut self, span: Span, message: impl Into<String>) {
        if let Some(d) = self.0.as_deref_mut() {
            d.note(span, message);
        }
    }

    /// A warning with a help text.
    /// An error: the configuration cannot run.
    pub fn error_help(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        if let Some(d) = self.0.as_deref_mut() {
            d.error(span, message).set_help(help);
        }
    }

    pub fn warn_help(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        if let Some(d) = self.warn(span, message) {
            d.set_help(help);
        }
    }
}

impl Pending {
    /// A group just pushed to the model's `sync_groups` at `position`.
    pub(crate) fn add_group(
        &mut self,
        name: &str,
        position: usize,
        span: Span,
        members: Vec<(String, Span)>,
    ) {
        let index = self.groups.len();
        self.sync_group_at.insert(name.to_string(), position);
        for (member, _) in &members {
            self.waiting_on
                .entry(member.clone())
                .or_default()
                .push(index);
        }
        self.touched.push(index);
        self.groups.push(PendingGroup {
            name: name.to_string(),
            span,
            members: members
                .into_iter()
                .map(|(name, span)| Member {
                    name,
                    span,
                    state: MemberState::Waiting,
                })
                .collect(),
            settled: false,
        });
    }

    /// The first instance read that uses the VMAC interface `name`.
    pub(crate) fn vmac_user(&self, name: &str) -> Option<&str> {
        self.vmac_users.get(name).map(String::as_str)
    }

    pub(crate) fn add_instance(&mut self, inst: &VrrpInstance, span: Span) {
        if let Some(vmac) = inst.use_vmac.as_ref().and_then(|v| v.interface.as_ref()) {
            self.vmac_users
                .entry(vmac.clone())
                .or_insert_with(|| inst.name.clone());
        }
        if let Some(groups) = self.waiting_on.remove(&inst.name) {
            self.touched.extend(groups);
        }
        self.by_name
            .entry(inst.name.clone())
            .or_insert(self.instances.len());
        self.instances.push(PendingInstance {
            name: inst.name.clone(),
            span,
            uses_globals: inst.version.is_none() || inst.strict_mode.is_none(),
        });
    }

    /// Whether a sync group of that name is in the model.
    pub(crate) fn has_sync_group(&self, name: &str) -> bool {
        self.sync_group_at.contains_key(name)
    }

    /// Finds the model's sync groups anew after some were taken out.
    pub(crate) fn index_sync_groups(&mut self, groups: &[super::model::SyncGroup]) {
        self.sync_group_at = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.name.clone(), i))
            .collect();
    }

    /// Takes a group out of the model's `sync_groups` (a group left with no member).
    fn remove_sync_group(&mut self, groups: &mut Vec<super::model::SyncGroup>, name: &str) {
        let Some(at) = self.sync_group_at.remove(name) else {
            return;
        };
        groups.remove(at);
        // Rare (a group none of whose members exist): the positions after it move down.
        for p in self.sync_group_at.values_mut() {
            if *p > at {
                *p -= 1;
            }
        }
    }

    /// Whether an instance of that name was read already.
    pub(crate) fn has_instance(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub(crate) fn add_script(&mut self, name: &str, span: Span) {
        self.scripts.push((name.to_string(), span));
    }

    /// The interface of the first instance `lvs_sync_daemon_interface`, if any.
    pub(crate) fn lvs_sync_daemon_interface(&self) -> Option<&str> {
        self.lvs_sync_daemon.as_ref().map(|(i, _)| i.as_str())
    }

    pub(crate) fn set_lvs_sync_daemon(&mut self, interface: String, instance: String) {
        self.lvs_sync_daemon.get_or_insert((interface, instance));
    }

    pub(crate) fn take_lvs_sync_daemon(&mut self) -> Option<(String, String)> {
        self.lvs_sync_daemon.take()
    }

    fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.instances.is_empty() && self.scripts.is_empty()
    }
}

/// Joins the members that exist now to their groups, and checks each group whose members are
/// all known. With `at_end`, members still unknown are reported and dropped.
///
/// While reading, only the groups just added or waiting for an instance just read are looked
/// at (the others cannot change), so that thousands of groups and instances stay linear.
pub fn resolve_groups(vrrp: &mut VrrpConfig, report: &mut Report, at_end: bool) {
    let mut pending = std::mem::take(&mut vrrp.pending);
    let groups: Vec<usize> = if at_end {
        pending.touched.clear();
        (0..pending.groups.len()).collect()
    } else {
        let mut touched = std::mem::take(&mut pending.touched);
        touched.sort_unstable();
        touched.dedup();
        touched
    };
    if groups.is_empty() {
        vrrp.pending = pending;
        return;
    }
    // Where each instance is in the model. While reading, the model's instances are the ones
    // `add_instance` saw, in the same order; at the end some may have been dropped.
    let by_name = std::mem::take(&mut pending.by_name);
    let at_end_positions: HashMap<String, usize>;
    let positions = if at_end {
        let mut m = HashMap::new();
        for (i, inst) in vrrp.instances.iter().enumerate() {
            m.entry(inst.name.clone()).or_insert(i);
        }
        at_end_positions = m;
        &at_end_positions
    } else {
        &by_name
    };
    for gi in groups {
        if pending.groups[gi].settled {
            continue;
        }
        for mi in 0..pending.groups[gi].members.len() {
            let m = &pending.groups[gi].members[mi];
            if m.state != MemberState::Waiting {
                continue;
            }
            let (name, span) = (m.name.clone(), m.span);
            let group = pending.groups[gi].name.clone();
            let state = if !positions.contains_key(&name) {
                if !at_end {
                    continue;
                }
                report.warn(
                    span,
                    format!(
                        "Virtual router {name} specified in sync group {group} doesn't exist - ignoring"
                    ),
                );
                MemberState::Rejected
            } else if pending.joined.contains(&name) {
                report.warn(
                    span,
                    format!(
                        "Virtual router {name} cannot exist in more than one sync group; ignoring {group}"
                    ),
                );
                MemberState::Rejected
            } else {
                pending.joined.insert(name);
                MemberState::Joined
            };
            pending.groups[gi].members[mi].state = state;
        }
        let g = &mut pending.groups[gi];
        let joined: Vec<String> = g
            .members
            .iter()
            .filter(|m| m.state == MemberState::Joined)
            .map(|m| m.name.clone())
            .collect();
        if let Some(&at) = pending.sync_group_at.get(&g.name) {
            vrrp.sync_groups[at].group = joined.clone();
        }
        if g.members.iter().any(|m| m.state == MemberState::Waiting) {
            continue;
        }
        g.settled = true;
        match joined.len() {
            0 => {
                report.warn(
                    g.span,
                    format!(
                        "Sync group {}, no matching virtual router found in group declaration - removing",
                        g.name
                    ),
                );
                let name = g.name.clone();
                pending.remove_sync_group(&mut vrrp.sync_groups, &name);
            }
            n => {
                if n == 1 {
                    report.warn_help(
                    g.span,
                    format!(
                        "Sync group {} has only 1 virtual router(s) - this probably isn't what you want",
                        g.name
                    ),
                    "a sync group keeps several instances in the same state",
                );
                }
                let (group_name, group_span) = (g.name.clone(), g.span);
                // The instance's position in the model, and its name line.
                let mut members: Vec<(usize, Span)> = joined
                    .iter()
                    .filter_map(|n| {
                        let line = by_name.get(n).map(|&i| pending.instances[i].span)?;
                        Some((*positions.get(n)?, line))
                    })
                    .collect();
                members.sort_unstable_by_key(|&(i, _)| i);
                apply_to_members(vrrp, &pending, &group_name, &members, group_span, report);
            }
        }
    }
    pending.by_name = by_name;
    vrrp.pending = pending;
}

/// keepalived's rules for the members of a sync group (at `members`: their positions in the
/// model, in file order, with their name lines), once its members are known.
fn apply_to_members(
    vrrp: &mut VrrpConfig,
    pending: &Pending,
    group: &str,
    members: &[(usize, Span)],
    group_span: Span,
    report: &mut Report,
) {
    let VrrpConfig {
        sync_groups,
        instances,
        scripts,
        track_files,
        ..
    } = vrrp;
    let Some(&at) = pending.sync_group_at.get(group) else {
        return;
    };
    let g = &mut sync_groups[at];
    let tracked = super::complete::Tracked {
        scripts,
        files: track_files,
        pending,
    };
    let mut has_owner = false;
    for &(i, span) in members {
        let inst = &mut instances[i];
        super::complete::apply_sync_group(inst, g, &tracked, span, report);
        has_owner |= inst.priority == super::model::OWNER_PRIORITY;
    }
    if has_owner {
        super::complete::clear_group_weights(g, &tracked, group_span, report);
    }
}

/// Runs the checks that need the whole file and `global_defs`, once; later calls do nothing.
pub fn settle(vrrp: &mut VrrpConfig, global: &GlobalDefs, report: &mut Report) {
    if vrrp.pending.is_empty() {
        return;
    }
    resolve_groups(vrrp, report, true);
    let mut pending = std::mem::take(&mut vrrp.pending);
    // Folded later, by fold_into_global.
    vrrp.pending.lvs_sync_daemon = pending.lvs_sync_daemon.take();
    let mut position: HashMap<String, usize> = HashMap::new();
    for (i, inst) in vrrp.instances.iter().enumerate() {
        position.entry(inst.name.clone()).or_insert(i);
    }
    for p in &pending.instances {
        if let Some(inst) = position.get(&p.name).map(|&i| &mut vrrp.instances[i]) {
            if p.uses_globals {
                apply_globals(inst, global, p.span, report);
            }
            check_global_down_timer(inst, global, p.span, report);
        }
    }
    drop_unused_scripts(vrrp, &pending.scripts, report);
}

/// The checks skipped while reading because the instance takes its version or strict mode
/// from `global_defs`.
fn apply_globals(inst: &mut VrrpInstance, global: &GlobalDefs, span: Span, report: &mut Report) {
    let version = inst.effective_version(global.vrrp_version);
    if inst.strict_mode.is_none() && global.vrrp_strict {
        super::complete::apply_strict(inst, version, span, report);
    }
    if inst.version.is_none() && !inst.is_ipv6() {
        if version == 3 && inst.authentication.take().is_some() {
            report.warn(
                span,
                format!(
                    "({}) VRRP version 3 does not support authentication. Ignoring.",
                    inst.name
                ),
            );
        }
        check_advert_int(inst, version, span, report);
    }
}

/// keepalived gives an instance without `down_timer_adverts` the global value before it
/// applies strict mode, which allows only the default.
fn check_global_down_timer(
    inst: &VrrpInstance,
    global: &GlobalDefs,
    span: Span,
    report: &mut Report,
) {
    if inst.down_timer_adverts.is_none()
        && inst.effective_strict_mode(global)
        && global.vrrp_down_timer_adverts != DEFAULT_DOWN_TIMER_ADVERTS
    {
        report.warn(
            span,
            format!(
                "({}) down_timer_adverts is incompatible with strict mode - resetting",
                inst.name
            ),
        );
    }
}

/// keepalived rounds an advert interval that the version cannot carry.
pub fn check_advert_int(inst: &VrrpInstance, version: u8, span: Span, report: &mut Report) {
    let effective = inst.effective_advert_int_us(version);
    if effective == inst.advert_int_us {
        return;
    }
    let unit = if version == 2 {
        "an integer"
    } else {
        "in units of 10ms"
    };
    report.warn_help(
        span,
        format!(
            "({}) VRRPv{version} advertisement interval {}s must be {unit} - rounding",
            inst.name,
            crate::read::format_us(inst.advert_int_us)
        ),
        format!("using {}s", crate::read::format_us(effective)),
    );
}

/// keepalived drops scripts that no instance or sync group tracks (it says so when it runs,
/// not with `-t`: a note).
fn drop_unused_scripts(vrrp: &mut VrrpConfig, spans: &[(String, Span)], report: &mut Report) {
    let tracked: HashSet<&str> = vrrp
        .instances
        .iter()
        .flat_map(|i| i.track_script.iter())
        .chain(vrrp.sync_groups.iter().flat_map(|g| g.track_script.iter()))
        .map(|t| t.name.as_str())
        .collect();
    // Only the first script of a name can be tracked: lookups find it.
    let mut named = HashSet::new();
    let used: Vec<bool> = vrrp
        .scripts
        .iter()
        .map(|s| named.insert(s.name.as_str()) && tracked.contains(s.name.as_str()))
        .collect();
    for (i, s) in vrrp.scripts.iter().enumerate() {
        if used[i] {
            continue;
        }
        // Scripts are recorded as they are added to the model, so the indexes match.
        if let Some((_, span)) = spans.get(i).filter(|(n, _)| *n == s.name) {
            report.note(
                *span,
                format!(
                    "vrrp_script {} is not tracked by any instance or sync group; keepalived does not run it",
                    s.name
                ),
            );
        }
    }
    let mut used = used.into_iter();
    vrrp.scripts.retain(|_| used.next().unwrap_or(true));
}
