//! Interface lookup and the link watcher, on a veth pair between two namespaces.

mod common;

use std::sync::mpsc;

use common::*;
use halb_sys::{interface_index, Error, LinkEvent, LinkWatcher, Netlink};

#[test]
fn lookup_reports_index_mac_and_state() {
    let pair = Pair::new("lookup");
    pair.a.block_on(|| async {
        let netlink = Netlink::connect().expect("netlink");
        let link = netlink.link(A_IF).await.expect("a0");
        assert_eq!(link.name, A_IF);
        assert_eq!(link.index, interface_index(A_IF).expect("index"));
        assert_eq!(link.mac, Some(A_MAC));
        assert!(link.admin_up && link.running && link.is_up());
        let all = netlink.links().await.expect("links");
        let names: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["lo", A_IF], "only the namespace's own interfaces");
        match netlink.link("nope0").await {
            Err(Error::NoSuchInterface { interface }) => assert_eq!(interface, "nope0"),
            other => panic!("expected NoSuchInterface, got {other:?}"),
        }
        assert!(matches!(
            interface_index("nope0"),
            Err(Error::NoSuchInterface { .. })
        ));
    });
}

#[test]
fn watcher_reports_down_and_up_of_the_interface_and_of_its_peer() {
    let pair = Pair::new("watch");
    let (events_tx, events_rx) = mpsc::channel::<LinkEvent>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let watcher = pair.a.spawn(move || async move {
        let mut watcher = LinkWatcher::start().await.expect("watcher");
        let a0 = watcher.link(A_IF).expect("a0 known from the start").clone();
        ready_tx.send(a0).expect("test alive");
        // Four transitions are expected; the test hangs up when it has them.
        for _ in 0..4 {
            match tokio::time::timeout(PATIENCE, watcher.next()).await {
                Ok(Some(event)) if event.interface == A_IF => {
                    if events_tx.send(event).is_err() {
                        return;
                    }
                }
                Ok(Some(other)) => panic!("unexpected event {other:?}"),
                Ok(None) => panic!("link notifications ended"),
                Err(_) => return,
            }
        }
    });
    let a0 = ready_rx.recv_timeout(PATIENCE).expect("watcher ready");
    assert!(a0.is_up());
    let expect = |up: bool, what: &str| {
        let event = events_rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no event after {what}"));
        assert_eq!(
            event,
            LinkEvent {
                interface: A_IF.into(),
                index: a0.index,
                up
            },
            "after {what}"
        );
    };
    pair.a.ip(&["link", "set", A_IF, "down"]);
    expect(false, "a0 down");
    pair.a.ip(&["link", "set", A_IF, "up"]);
    expect(true, "a0 up");
    // The peer going down takes a0's carrier away: a0 is still admin up, yet cannot carry
    // adverts.
    pair.b.ip(&["link", "set", B_IF, "down"]);
    expect(false, "b0 (the peer) down");
    pair.b.ip(&["link", "set", B_IF, "up"]);
    expect(true, "b0 (the peer) up");
    watcher.join().expect("watcher thread");
}
