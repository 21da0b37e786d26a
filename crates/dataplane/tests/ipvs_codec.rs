//! The IPVS generic netlink codec against byte fixtures written from the kernel's uapi header
//! and policies (not from the encoder): requests as the kernel must receive them, answers as
//! the kernel sends them.
//!
//! Netlink is in the host's byte order, so the fixtures are those of a little-endian host.
#![cfg(target_endian = "little")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use halb_config::model::{Tunnel, TunnelChecksum, TunnelType};
use halb_dataplane::ipvs::attrs::*;
use halb_dataplane::ipvs::config::{IpvsInfo, Timeouts};
use halb_dataplane::ipvs::daemon::{SyncDaemon, SyncState};
use halb_dataplane::ipvs::dest::{DestAttrs, KernelDest};
use halb_dataplane::ipvs::genl::{self, AttrMap, AttrWriter, Reply};
use halb_dataplane::ipvs::service::{KernelService, ServiceAttrs, ServiceId};
use halb_dataplane::{Counters, Rates};
use halb_lb::table::{
    Destination, Forwarding, Persistence, PersistenceGranularity, ProtocolKey, SchedFlags,
    Scheduler, ServiceKey, ServiceSettings,
};

/// Bytes from hex, ignoring whitespace and `#` comments to the end of a line.
fn hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<String>()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn seed_service() -> ServiceSettings {
    ServiceSettings {
        key: ServiceKey::Addr {
            protocol: ProtocolKey::Tcp,
            addr: "192.168.66.251:3306".parse().unwrap(),
        },
        scheduler: Scheduler::Wrr,
        flags: SchedFlags::default(),
        persistence: Some(Persistence {
            timeout_s: 120,
            granularity: None,
        }),
        persistence_engine: None,
        fallback: None,
    }
}

/// `ipvsadm -A -t 192.168.66.251:3306 -s wrr -p 120`, as the kernel must receive it.
const NEW_SERVICE_SEED: &str = "
    68000000 2200 0500 07000000 00000000   # nlmsghdr: 104 bytes, family 0x22, REQUEST|ACK, seq 7
    01 01 0000                             # genlmsghdr: IPVS_CMD_NEW_SERVICE, version 1
    5400 0180                              # IPVS_CMD_ATTR_SERVICE, nested, 84 bytes
      0600 0100 0200 0000                  # AF: AF_INET (u16, padded)
      0600 0200 0600 0000                  # PROTOCOL: TCP
      1400 0300 c0a842fb 00000000 00000000 00000000   # ADDR: 192.168.66.251 in 16 bytes
      0600 0400 0cea 0000                  # PORT: 3306 in network order
      0800 0600 77727200                   # SCHED_NAME: \"wrr\\0\"
      0c00 0700 01000000 ffffffff          # FLAGS: PERSISTENT, mask all
      0800 0800 78000000                   # TIMEOUT: 120
      0800 0900 ffffffff                   # NETMASK: 255.255.255.255 in network order
";

#[test]
fn new_service_request_matches_the_kernel_layout() {
    let attrs = ServiceAttrs::from_settings(&seed_service()).unwrap();
    let mut w = AttrWriter::new();
    w.nested(CMD_ATTR_SERVICE, |s| attrs.encode(s));
    let request = genl::encode_request(
        0x22,
        genl::NLM_F_REQUEST | genl::NLM_F_ACK,
        7,
        CMD_NEW_SERVICE,
        GENL_VERSION,
        w.as_bytes(),
    );
    assert_eq!(request, hex(NEW_SERVICE_SEED));
}

#[test]
fn ipv6_persistence_is_a_prefix_length_in_host_order() {
    let mut settings = seed_service();
    settings.key = ServiceKey::Addr {
        protocol: ProtocolKey::Udp,
        addr: "[2001:db8::251]:53".parse().unwrap(),
    };
    settings.scheduler = Scheduler::Sh;
    settings.flags = SchedFlags {
        ops: true,
        flag_1: true,
        flag_2: true,
        flag_3: false,
    };
    settings.persistence = Some(Persistence {
        timeout_s: 300,
        granularity: Some(PersistenceGranularity::Prefix(64)),
    });
    let attrs = ServiceAttrs::from_settings(&settings).unwrap();
    let mut w = AttrWriter::new();
    attrs.encode(&mut w);
    let expected = hex("
        0600 0100 0a00 0000                # AF_INET6
        0600 0200 1100 0000                # UDP
        1400 0300 20010db8 00000000 00000000 00000251
        0600 0400 0035 0000                # port 53
        0700 0600 736800 00                # \"sh\\0\", padded
        0c00 0700 1d000000 ffffffff        # PERSISTENT|ONEPACKET|SCHED1|SCHED2
        0800 0800 2c010000                 # 300 s
        0800 0900 40000000                 # prefix length 64, host order
    ");
    assert_eq!(w.as_bytes(), expected.as_slice());

    // Without persistence an IPv6 service still carries /128: the kernel refuses 0.
    settings.persistence = None;
    let attrs = ServiceAttrs::from_settings(&settings).unwrap();
    assert_eq!(attrs.netmask, 128);
    assert_eq!(attrs.flags, SVC_F_ONEPACKET | SVC_F_SCHED1 | SVC_F_SCHED2);
    assert_eq!(attrs.timeout_s, 0);
}

#[test]
fn ipv4_netmask_granularity_travels_in_network_order() {
    let mut settings = seed_service();
    settings.persistence = Some(Persistence {
        timeout_s: 60,
        granularity: Some(PersistenceGranularity::Netmask(Ipv4Addr::new(
            255, 255, 255, 0,
        ))),
    });
    let attrs = ServiceAttrs::from_settings(&settings).unwrap();
    assert_eq!(attrs.netmask, 0xffff_ff00);
    let mut w = AttrWriter::new();
    attrs.encode(&mut w);
    assert!(w
        .as_bytes()
        .windows(8)
        .any(|win| win == hex("0800 0900 ffffff00").as_slice()));

    // A prefix length on an IPv4 service means the same netmask.
    settings.persistence = Some(Persistence {
        timeout_s: 60,
        granularity: Some(PersistenceGranularity::Prefix(24)),
    });
    assert_eq!(
        ServiceAttrs::from_settings(&settings).unwrap().netmask,
        0xffff_ff00
    );

    // An IPv4 netmask cannot describe an IPv6 service.
    settings.key = ServiceKey::Fwmark {
        mark: 5,
        inet6: true,
    };
    settings.persistence = Some(Persistence {
        timeout_s: 60,
        granularity: Some(PersistenceGranularity::Netmask(Ipv4Addr::new(
            255, 255, 0, 0,
        ))),
    });
    let err = ServiceAttrs::from_settings(&settings).unwrap_err();
    assert!(err.contains("prefix length"), "{err}");
}

#[test]
fn fwmark_services_are_named_by_mark_and_family() {
    let id = ServiceId::from_key(&ServiceKey::Fwmark {
        mark: 1,
        inet6: true,
    });
    let mut w = AttrWriter::new();
    w.nested(CMD_ATTR_SERVICE, |s| id.encode(s));
    assert_eq!(
        w.as_bytes(),
        hex("
            1400 0180
              0600 0100 0a00 0000   # AF_INET6
              0800 0500 01000000    # FWMARK 1
        ")
        .as_slice()
    );
}

/// `ipvsadm -a -t 192.168.66.251:3306 -r 192.168.66.253:3306 -i -w 3 -x 100 -y 50
///  --tun-type gue --tun-port 6080 --tun-csum`, as the kernel must receive it.
const NEW_DEST_GUE: &str = "
    3000 0180                          # SERVICE, nested, 48 bytes (identity only)
      0600 0100 0200 0000
      0600 0200 0600 0000
      1400 0300 c0a842fb 00000000 00000000 00000000
      0600 0400 0cea 0000
    6000 0280                          # DEST, nested, 96 bytes
      0600 0b00 0200 0000              # ADDR_FAMILY AF_INET
      1400 0100 c0a842fd 00000000 00000000 00000000
      0600 0200 0cea 0000              # PORT 3306, network order
      0800 0300 02000000               # FWD_METHOD: IP_VS_CONN_F_TUNNEL
      0800 0400 03000000               # WEIGHT 3
      0800 0500 64000000               # U_THRESH 100
      0800 0600 32000000               # L_THRESH 50
      0500 0d00 01 000000              # TUN_TYPE: GUE (u8)
      0600 0e00 17c0 0000              # TUN_PORT: 6080, network order
      0600 0f00 0100 0000              # TUN_FLAGS: CSUM
";

fn gue_dest() -> Destination {
    Destination {
        addr: "192.168.66.253:3306".parse().unwrap(),
        weight: 3,
        forwarding: Forwarding::Tun(Tunnel {
            tunnel_type: TunnelType::Gue { port: 6080 },
            checksum: TunnelChecksum::Csum,
        }),
        uthreshold: 100,
        lthreshold: 50,
    }
}

#[test]
fn new_dest_request_carries_the_tunnel() {
    let id = ServiceId::from_key(&seed_service().key);
    let dest = DestAttrs::from_destination(&gue_dest()).unwrap();
    let mut w = AttrWriter::new();
    w.nested(CMD_ATTR_SERVICE, |s| id.encode(s));
    w.nested(CMD_ATTR_DEST, |d| dest.encode(d));
    assert_eq!(w.as_bytes(), hex(NEW_DEST_GUE).as_slice());
    assert_eq!(dest.destination(), Some(gue_dest()));
}

#[test]
fn forwarding_methods_and_their_refusals() {
    let mut d = gue_dest();
    d.forwarding = Forwarding::Dr;
    let attrs = DestAttrs::from_destination(&d).unwrap();
    assert_eq!(attrs.fwd_method, CONN_F_DROUTE);
    let mut w = AttrWriter::new();
    attrs.encode(&mut w);
    // No tunnel attributes outside tunnels.
    assert_eq!(w.as_bytes().len(), 8 + 20 + 8 + 4 * 8);

    d.forwarding = Forwarding::Nat;
    assert_eq!(
        DestAttrs::from_destination(&d).unwrap().fwd_method,
        CONN_F_MASQ
    );

    d.forwarding = Forwarding::Tun(Tunnel {
        tunnel_type: TunnelType::Gre,
        checksum: TunnelChecksum::NoCsum,
    });
    let gre = DestAttrs::from_destination(&d).unwrap();
    assert_eq!(
        (gre.tun_type, gre.tun_port, gre.tun_flags),
        (TUNNEL_TYPE_GRE, 0, 0)
    );

    d.forwarding = Forwarding::Tun(Tunnel {
        tunnel_type: TunnelType::Gue { port: 0 },
        checksum: TunnelChecksum::RemCsum,
    });
    assert!(DestAttrs::from_destination(&d)
        .unwrap_err()
        .contains("needs a port"));

    d.forwarding = Forwarding::Nat;
    d.weight = u32::MAX;
    assert!(DestAttrs::from_destination(&d).is_err());
}

/// One message of an `IPVS_CMD_GET_SERVICE` dump as the kernel sends it: a persistent wrr
/// service with the 32-bit and the 64-bit statistics (the latter with a PAD attribute, as
/// `nla_put_u64_64bit` adds on hosts that need aligned 64-bit values).
const SERVICE_DUMP: &str = "
    44010000 2200 0200 09000000 99000000   # nlmsghdr: 324 bytes, NLM_F_MULTI, seq 9
    01 01 0000                             # IPVS_CMD_NEW_SERVICE
    3001 0180                              # SERVICE, nested, 304 bytes
      0600 0100 0200 0000
      0600 0200 0600 0000
      1400 0300 c0a842fb 00000000 00000000 00000000
      0600 0400 0cea 0000
      0800 0600 77727200
      0c00 0700 03000000 ffffffff          # PERSISTENT|HASHED
      0800 0800 78000000                   # 120 s
      0800 0900 ffffff00                   # 255.255.255.0
      5c00 0a00                            # STATS (32-bit), 92 bytes
        0800 0100 05000000                 # conns 5
        0800 0200 0a000000                 # inpkts 10
        0800 0300 09000000                 # outpkts 9
        0c00 0400 e803000000000000         # inbytes 1000
        0c00 0500 d007000000000000         # outbytes 2000
        0800 0600 01000000                 # cps 1
        0800 0700 02000000                 # inpps 2
        0800 0800 03000000                 # outpps 3
        0800 0900 04000000                 # inbps 4
        0800 0a00 05000000                 # outbps 5
      8000 0c00                            # STATS64, 128 bytes
        0400 0b00                          # PAD
        0c00 0100 0500000001000000         # conns 2^32 + 5
        0c00 0200 0a00000000000000
        0c00 0300 0900000000000000
        0c00 0400 e803000000000000
        0c00 0500 d007000000000000
        0c00 0600 0100000000000000
        0c00 0700 0200000000000000
        0c00 0800 0300000000000000
        0c00 0900 0400000000000000
        0c00 0a00 0500000000000000
    14000000 0300 0200 09000000 99000000 00000000   # NLMSG_DONE, status 0
";

#[test]
fn service_dump_decodes_with_64_bit_counters() {
    let bytes = hex(SERVICE_DUMP);
    let replies = genl::parse_replies(&bytes).unwrap();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1], Reply::Done { seq: 9, errno: 0 });
    let Reply::Message {
        cmd, attrs, flags, ..
    } = replies[0]
    else {
        panic!("{replies:?}");
    };
    assert_eq!(cmd, CMD_NEW_SERVICE);
    assert_eq!(flags, genl::NLM_F_MULTI);
    let top = AttrMap::parse(attrs).unwrap();
    let nest = top.nested(CMD_ATTR_SERVICE).unwrap().unwrap();
    let service = KernelService::decode(&nest).unwrap();
    assert_eq!(
        service.attrs.id,
        ServiceId::Addr {
            protocol: IPPROTO_TCP,
            addr: IpAddr::V4(Ipv4Addr::new(192, 168, 66, 251)),
            port: 3306
        }
    );
    // The kernel's HASHED flag is not a setting.
    assert_eq!(service.attrs.flags, SVC_F_PERSISTENT);
    assert_eq!(service.attrs.netmask, 0xffff_ff00);
    assert_eq!(
        service.stats.counters,
        Counters {
            conns: (1 << 32) + 5,
            inpkts: 10,
            outpkts: 9,
            inbytes: 1000,
            outbytes: 2000
        }
    );
    assert_eq!(
        service.stats.rates,
        Rates {
            cps: 1,
            inpps: 2,
            outpps: 3,
            inbps: 4,
            outbps: 5
        }
    );
    let settings = service.attrs.settings().unwrap();
    assert_eq!(settings.key, seed_service().key);
    assert_eq!(settings.scheduler, Scheduler::Wrr);
    assert_eq!(
        settings.persistence,
        Some(Persistence {
            timeout_s: 120,
            granularity: Some(PersistenceGranularity::Netmask(Ipv4Addr::new(
                255, 255, 255, 0
            )))
        })
    );
}

#[test]
fn old_kernels_32_bit_stats_are_read_when_no_64_bit_ones_come() {
    let nest = hex("
        0600 0100 0200 0000
        0800 0500 07000000                 # FWMARK 7
        0700 0600 726e00 00                # \"rn\\0\": a scheduler halb does not know
        0c00 0700 02000000 ffffffff
        0800 0800 00000000
        0800 0900 ffffffff
        1800 0a00                          # STATS (32-bit)
          0800 0100 2a000000               # conns 42
          0c00 0400 0100000000000000       # inbytes 1
    ");
    let service = KernelService::decode(&AttrMap::parse(&nest).unwrap()).unwrap();
    assert_eq!(
        service.attrs.id,
        ServiceId::Fwmark {
            mark: 7,
            inet6: false
        }
    );
    assert_eq!(service.stats.counters.conns, 42);
    assert_eq!(service.stats.counters.inbytes, 1);
    // Readable, but not expressible in halb's terms.
    assert_eq!(
        service.attrs.id.key(),
        Some(ServiceKey::Fwmark {
            mark: 7,
            inet6: false
        })
    );
    assert_eq!(service.attrs.settings(), None);
}

/// A destination as the kernel dumps it (`ip_vs_genl_fill_dest`, 6.x).
const DEST_DUMP_NEST: &str = "
    1400 0100 c0a842fd 00000000 00000000 00000000
    0600 0200 0cea 0000                  # PORT
    0800 0300 03000000                   # DROUTE
    0800 0400 01000000                   # weight 1
    0500 0d00 00 000000                  # TUN_TYPE 0
    0600 0e00 0000 0000                  # TUN_PORT 0
    0600 0f00 0000 0000                  # TUN_FLAGS 0
    0800 0500 00000000                   # U_THRESH
    0800 0600 00000000                   # L_THRESH
    0800 0700 02000000                   # ActiveConn 2
    0800 0800 07000000                   # InActConn 7
    0800 0900 01000000                   # PersistConn 1
    0600 0b00 0200 0000                  # ADDR_FAMILY
    1000 0c00                            # STATS64 with only conns
      0c00 0100 0900000000000000
";

#[test]
fn dest_dump_decodes_counts_and_forwarding() {
    let nest = hex(DEST_DUMP_NEST);
    let dest = KernelDest::decode(&AttrMap::parse(&nest).unwrap(), false).unwrap();
    assert_eq!(
        dest.attrs.addr,
        "192.168.66.253:3306".parse::<SocketAddr>().unwrap()
    );
    assert_eq!((dest.active, dest.inactive, dest.persistent), (2, 7, 1));
    assert_eq!(dest.stats.counters.conns, 9);
    assert_eq!(
        dest.attrs.destination(),
        Some(Destination {
            addr: "192.168.66.253:3306".parse().unwrap(),
            weight: 1,
            forwarding: Forwarding::Dr,
            uthreshold: 0,
            lthreshold: 0,
        })
    );
}

#[test]
fn acks_errors_and_the_family_lookup() {
    // An ack (error 0) and an error (-ESRCH), each followed by the request's header.
    let bytes = hex("
        24000000 0200 0001 05000000 99000000  00000000  68000000 2200 0500 05000000 00000000
        24000000 0200 0001 06000000 99000000  fdffffff  68000000 2200 0500 06000000 00000000
    ");
    assert_eq!(
        genl::parse_replies(&bytes).unwrap(),
        vec![Reply::Ack { seq: 5 }, Reply::Error { seq: 6, errno: 3 }]
    );

    assert_eq!(
        genl::get_family_request(1, "IPVS"),
        hex("
            20000000 1000 0500 01000000 00000000   # to the controller, REQUEST|ACK
            03 02 0000                             # CTRL_CMD_GETFAMILY, version 2
            0900 0200 49505653 00 000000           # FAMILY_NAME \"IPVS\\0\"
        ")
    );
    let answer = hex("
        0600 0100 2300 0000                  # FAMILY_ID 0x23
        0900 0200 49505653 00 000000
        0800 0300 01000000                   # VERSION 1
    ");
    assert_eq!(genl::family_id_from_reply(&answer).unwrap(), 0x23);
}

#[test]
fn truncated_data_is_an_error_not_a_panic() {
    let good = hex(SERVICE_DUMP);
    for cut in 0..good.len() {
        let _ = genl::parse_replies(&good[..cut]);
    }
    let nest = hex(DEST_DUMP_NEST);
    for cut in 0..nest.len() {
        if let Ok(map) = AttrMap::parse(&nest[..cut]) {
            let _ = KernelDest::decode(&map, false);
        }
    }
    // An attribute that claims more than there is.
    assert!(AttrMap::parse(&hex("0800 0100 0000")).is_err());
    // A u32 of the wrong size.
    let short = hex("0600 0100 0100 0000");
    let map = AttrMap::parse(&short).unwrap();
    assert!(map.get(1).unwrap().u32().is_err());
}

#[test]
fn sync_daemon_start_and_listing() {
    let daemon = SyncDaemon {
        state: SyncState::Master,
        interface: "eth0".into(),
        sync_id: 7,
        max_len: Some(1400),
        group: Some("224.0.0.82".parse().unwrap()),
        port: Some(8849),
        ttl: Some(2),
    };
    let mut w = AttrWriter::new();
    daemon.encode(&mut w);
    let expected = hex("
        0800 0100 01000000                   # STATE master
        0900 0200 65746830 00 000000         # MCAST_IFN \"eth0\\0\"
        0800 0300 07000000                   # SYNC_ID 7
        0600 0400 7805 0000                  # SYNC_MAXLEN 1400
        0800 0500 e0000052                   # MCAST_GROUP 224.0.0.82
        0600 0700 9122 0000                  # MCAST_PORT 8849, host order
        0500 0800 02 000000                  # MCAST_TTL 2
    ");
    assert_eq!(w.as_bytes(), expected.as_slice());
    let back = SyncDaemon::decode(&AttrMap::parse(&expected).unwrap()).unwrap();
    assert_eq!(back, daemon);

    let mut stop = AttrWriter::new();
    SyncDaemon::encode_stop(SyncState::Backup, &mut stop);
    assert_eq!(stop.as_bytes(), hex("0800 0100 02000000").as_slice());

    let mut bad = daemon.clone();
    bad.interface = "a-very-long-ifname".into();
    assert!(bad.validate().is_err());
    bad = daemon;
    bad.group = Some("192.168.66.1".parse().unwrap());
    assert!(bad.validate().is_err());
}

#[test]
fn timeouts_and_version() {
    let t = Timeouts {
        tcp_s: 7200,
        tcp_fin_s: 0,
        udp_s: 300,
    };
    let mut w = AttrWriter::new();
    t.encode(&mut w);
    // The zero one is left out: the kernel keeps its value.
    assert_eq!(
        w.as_bytes(),
        hex("0800 0400 201c0000  0800 0600 2c010000").as_slice()
    );
    let answer = hex("0800 0400 201c0000  0800 0500 78000000  0800 0600 2c010000");
    assert_eq!(
        Timeouts::decode(&AttrMap::parse(&answer).unwrap()).unwrap(),
        Timeouts {
            tcp_s: 7200,
            tcp_fin_s: 120,
            udp_s: 300
        }
    );
    let info =
        IpvsInfo::decode(&AttrMap::parse(&hex("0800 0100 01020100  0800 0200 00100000")).unwrap())
            .unwrap();
    assert_eq!(info.version_string(), "1.2.1");
    assert_eq!(info.conn_tab_size, 4096);
}

#[test]
fn settings_survive_the_round_trip_through_the_kernel_form() {
    let mut settings = seed_service();
    for scheduler in Scheduler::ALL {
        settings.scheduler = scheduler;
        settings.flags = SchedFlags {
            ops: scheduler == Scheduler::Rr,
            flag_1: scheduler == Scheduler::Sh,
            flag_2: scheduler == Scheduler::Mh,
            flag_3: scheduler == Scheduler::Dh,
        };
        let attrs = ServiceAttrs::from_settings(&settings).unwrap();
        assert_eq!(attrs.settings(), Some(settings.clone()), "{scheduler:?}");
    }
    // A netmask of all ones is no granularity at all.
    settings.persistence = Some(Persistence {
        timeout_s: 10,
        granularity: Some(PersistenceGranularity::Netmask(Ipv4Addr::BROADCAST)),
    });
    let a = ServiceAttrs::from_settings(&settings).unwrap();
    settings.persistence = Some(Persistence {
        timeout_s: 10,
        granularity: None,
    });
    let b = ServiceAttrs::from_settings(&settings).unwrap();
    assert!(a.same_settings(&b));
    // Timeouts of a service without persistence do not matter.
    settings.persistence = None;
    let mut c = ServiceAttrs::from_settings(&settings).unwrap();
    let d = c.clone();
    c.timeout_s = 300;
    assert!(c.same_settings(&d));
}
