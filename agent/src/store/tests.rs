//! Unit tests of the store: every table group, the cascades and the error mapping.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::*;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn container(name: &str, t: i64) -> ContainerRecord {
    ContainerRecord::new(
        name,
        format!("id-{name}"),
        json!({"image": "busybox", "env": {"A": "1"}}),
        format!("hash-{name}"),
        "sha256:aaaa",
        t,
    )
}

fn network(name: &str, bridge: &str) -> NetworkRecord {
    NetworkRecord {
        name: name.into(),
        bridge: bridge.into(),
        subnet: "10.77.0.0/24".into(),
        gateway: Some(IpAddr::from([10, 77, 0, 1])),
        config: json!({"mtu": 1500}),
        created_at: 5,
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 77, 0, last])
}

fn candidates() -> impl Iterator<Item = IpAddr> {
    (2..=6).map(ip)
}

fn port(container: &str, host_ip: [u8; 4], host_port: u16) -> PortBinding {
    PortBinding {
        container: container.into(),
        host_ip: IpAddr::from(host_ip),
        host_port,
        proto: Protocol::Tcp,
        container_port: 80,
    }
}

/// A store with network `n1` and containers `web`, `db`.
fn populated() -> Result<Store> {
    let mut s = Store::open_in_memory()?;
    s.transaction(|tx| {
        tx.upsert_network(&network("n1", "br-n1"))?;
        tx.upsert_container(&container("web", 10))?;
        tx.upsert_container(&container("db", 11))
    })?;
    Ok(s)
}

#[test]
fn open_creates_a_private_directory_and_sets_the_pragmas() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("state");
    let s = Store::open(&dir)?;
    let mode = std::fs::metadata(&dir)?.permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    let journal: String = s.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    assert_eq!(journal, "wal");
    let sync: i64 = s.conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    assert_eq!(sync, 2);
    let fk: i64 = s.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    let cache: i64 = s.conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    assert_eq!(cache, -CACHE_KIB, "page cache capped in KiB");
    assert_eq!(fk, 1);
    assert_eq!(s.schema_version()?, schema::CURRENT_VERSION);
    assert_eq!(s.path(), dir.join(DB_FILE));
    let pid = std::fs::read_to_string(dir.join(LOCK_FILE))?;
    assert_eq!(pid.trim(), std::process::id().to_string());
    Ok(())
}

#[test]
fn data_survives_reopen() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("state");
    {
        let mut s = Store::open(&dir)?;
        s.transaction(|tx| {
            tx.upsert_container(&container("web", 1))?;
            tx.append_event(&NewEvent {
                time: 2,
                kind: "container.create".into(),
                object: "container/web".into(),
                message: json!({"reason": "new"}),
            })
        })?;
    }
    let mut s = Store::open(&dir)?;
    let (c, events) =
        s.transaction(|tx| Ok::<_, Error>((tx.container("web")?, tx.events_after(None, 10)?)))?;
    assert_eq!(c, Some(container("web", 1)));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message, json!({"reason": "new"}));
    assert!(s.check_integrity()?.is_empty());
    Ok(())
}

#[test]
fn open_refuses_a_directory_open_to_others() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let err = Store::open(&dir).err().ok_or("open succeeded")?;
    assert!(
        matches!(err, Error::InsecureStateDir { mode: 0o755, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("mode 0755") && text.contains("chmod 700"),
        "{text}"
    );
    assert!(!dir.join(DB_FILE).exists());

    let file = tmp.path().join("file");
    std::fs::write(&file, "")?;
    let err = Store::open(&file).err().ok_or("open succeeded")?;
    assert!(matches!(err, Error::NotADirectory { .. }), "{err:?}");
    Ok(())
}

#[test]
fn second_open_of_the_same_directory_is_locked_out() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("state");
    let first = Store::open(&dir)?;
    let err = Store::open(&dir).err().ok_or("second open succeeded")?;
    let text = err.to_string();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    drop(first);
    Store::open(&dir)?;
    Ok(())
}

#[test]
fn a_failing_transaction_leaves_nothing_behind() -> TestResult {
    let mut s = populated()?;
    let res = s.transaction(|tx| {
        tx.upsert_container(&container("cache", 3))?;
        tx.bind_port(&port("web", [127, 0, 0, 1], 8080))?;
        tx.bind_port(&port("db", [127, 0, 0, 1], 8080))
    });
    assert!(
        matches!(res, Err(Error::PortAlreadyBound { .. })),
        "{res:?}"
    );
    let (c, ports) =
        s.transaction(|tx| Ok::<_, Error>((tx.container("cache")?, tx.port_bindings()?)))?;
    assert_eq!(c, None);
    assert!(ports.is_empty());
    Ok(())
}

#[test]
fn containers_round_trip_and_update_in_place() -> TestResult {
    let mut s = populated()?;
    let mut web = container("web", 10);
    web.runtime = RuntimeIds {
        monitor_pid: Some(100),
        container_pid: Some(101),
        netns_path: Some("/run/agent/netns/web".into()),
    };
    web.state = ContainerState::Exited;
    web.exit_code = Some(137);
    web.signal = Some(9);
    web.oom_killed = true;
    web.restart_count = 3;
    web.started_at = Some(20);
    web.finished_at = Some(30);
    web.health = Some(HealthStatus::Unhealthy);
    s.transaction(|tx| {
        tx.allocate_ip("n1", "web", candidates(), 12)?;
        tx.upsert_container(&web)
    })?;
    let got = s.transaction(|tx| tx.container("web"))?;
    assert_eq!(got.as_ref(), Some(&web));
    let by_id = s.transaction(|tx| tx.container_by_id("id-web"))?;
    assert_eq!(by_id.as_ref(), Some(&web));

    // A recreate (new id, new config) keeps the address.
    let updated = s.transaction(|tx| {
        tx.update_container("web", |c| {
            c.id = "id-web-2".into();
            c.config_hash = "hash-2".into();
            c.state = ContainerState::Running;
        })
    })?;
    assert_eq!(updated.state, ContainerState::Running);
    let (ips, all, using) = s.transaction(|tx| {
        Ok::<_, Error>((
            tx.container_ips("web")?,
            tx.containers()?,
            tx.containers_using_image("sha256:aaaa")?,
        ))
    })?;
    assert_eq!(ips.len(), 1);
    assert_eq!(ips[0].ip, ip(2));
    let names: Vec<_> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!(using.len(), 2);

    let err = s
        .transaction(|tx| tx.update_container("nope", |_| {}))
        .err();
    assert!(
        matches!(
            err,
            Some(Error::NotFound {
                kind: "container",
                ..
            })
        ),
        "{err:?}"
    );
    let err = s.transaction(|tx| {
        tx.upsert_container(&ContainerRecord {
            id: "id-db".into(),
            ..container("web", 1)
        })
    });
    assert!(matches!(err, Err(Error::Invalid { .. })), "{err:?}");
    Ok(())
}

#[test]
fn container_states_parse_back() {
    for st in ContainerState::ALL {
        assert_eq!(st.as_str().parse::<ContainerState>(), Ok(st));
    }
    let err = "paused".parse::<ContainerState>().err().unwrap_or_default();
    assert!(err.contains("stopped-by-user"), "{err}");
}

#[test]
fn undecodable_rows_are_reported_with_table_row_and_column() -> TestResult {
    let mut s = populated()?;
    s.conn.execute(
        "UPDATE containers SET state = 'zombie' WHERE name = 'web'",
        [],
    )?;
    let err = s
        .transaction(|tx| tx.container("web"))
        .err()
        .ok_or("decoded")?;
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::Corrupt {
                table: "containers",
                column: "state",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("\"web\"") && text.contains("zombie"),
        "{text}"
    );
    Ok(())
}

#[test]
fn ip_allocation_reuses_and_finds_the_first_free_address() -> TestResult {
    let mut s = populated()?;
    s.transaction(|tx| {
        tx.upsert_container(&container("c3", 1))?;
        tx.upsert_container(&container("c4", 1))
    })?;
    let got = s.transaction(|tx| {
        let web = tx.allocate_ip("n1", "web", candidates(), 1)?;
        let again = tx.allocate_ip("n1", "web", candidates().skip(3), 2)?;
        assert_eq!(again, web, "a container keeps its address");
        let db = tx.reserve_ip("n1", "db", ip(3), 3)?;
        let c3 = tx.allocate_ip("n1", "c3", candidates(), 4)?;
        Ok::<_, Error>((web.ip, db.ip, c3.ip))
    })?;
    assert_eq!(got, (ip(2), ip(3), ip(4)));

    let err = s
        .transaction(|tx| tx.reserve_ip("n1", "c4", ip(3), 5))
        .err();
    match err {
        Some(e @ Error::IpInUse { .. }) => {
            assert_eq!(
                e.to_string(),
                "address 10.77.0.3 in network n1 is already allocated to container db"
            )
        }
        other => panic!("expected IpInUse, got {other:?}"),
    }
    let err = s
        .transaction(|tx| tx.allocate_ip("n1", "c4", (2..=4).map(ip), 5))
        .err();
    assert!(matches!(err, Some(Error::NetworkFull { .. })), "{err:?}");
    let err = s
        .transaction(|tx| tx.allocate_ip("nope", "c4", candidates(), 5))
        .err();
    assert!(
        matches!(
            err,
            Some(Error::NotFound {
                kind: "network",
                ..
            })
        ),
        "{err:?}"
    );
    let err = s
        .transaction(|tx| tx.allocate_ip("n1", "ghost", candidates(), 5))
        .err();
    assert!(
        matches!(
            err,
            Some(Error::NotFound {
                kind: "container",
                ..
            })
        ),
        "{err:?}"
    );

    // Released addresses are handed out again.
    let again = s.transaction(|tx| {
        assert!(tx.release_ip("n1", "db")?);
        assert!(!tx.release_ip("n1", "db")?);
        tx.allocate_ip("n1", "c4", candidates(), 6)
    })?;
    assert_eq!(again.ip, ip(3));
    let holders: Vec<_> = s
        .transaction(|tx| tx.ip_allocations("n1"))?
        .into_iter()
        .map(|a| (a.container, a.ip))
        .collect();
    assert_eq!(
        holders,
        [
            ("c3".to_string(), ip(4)),
            ("c4".into(), ip(3)),
            ("web".into(), ip(2))
        ]
    );
    Ok(())
}

#[test]
fn port_conflicts_name_the_holder() -> TestResult {
    let mut s = populated()?;
    s.transaction(|tx| {
        tx.bind_port(&port("web", [127, 0, 0, 1], 8080))?;
        // Recording the same binding again is fine.
        tx.bind_port(&port("web", [127, 0, 0, 1], 8080))?;
        // Same port, other address or other protocol: no conflict.
        tx.bind_port(&port("db", [127, 0, 0, 2], 8080))?;
        tx.bind_port(&PortBinding {
            proto: Protocol::Udp,
            ..port("db", [127, 0, 0, 1], 8080)
        })
    })?;
    let err = s
        .transaction(|tx| tx.bind_port(&port("db", [127, 0, 0, 1], 8080)))
        .err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("host port 127.0.0.1:8080/tcp already bound by container web")
    );
    // The wildcard address overlaps every address of its family.
    let err = s
        .transaction(|tx| tx.bind_port(&port("db", [0, 0, 0, 0], 8080)))
        .err();
    assert!(
        matches!(err, Some(Error::PortAlreadyBound { .. })),
        "{err:?}"
    );
    s.transaction(|tx| tx.bind_port(&port("db", [0, 0, 0, 0], 9090)))?;
    let err = s
        .transaction(|tx| tx.bind_port(&port("web", [127, 0, 0, 9], 9090)))
        .err();
    match err {
        Some(Error::PortAlreadyBound { container, .. }) => assert_eq!(container, "db"),
        other => panic!("expected PortAlreadyBound, got {other:?}"),
    }
    let err = s
        .transaction(|tx| tx.bind_port(&port("web", [127, 0, 0, 1], 0)))
        .err();
    assert!(matches!(err, Some(Error::Invalid { .. })), "{err:?}");

    // Replacing a container's ports is all or nothing.
    let res = s.transaction(|tx| {
        tx.set_container_ports(
            "web",
            &[
                port("web", [127, 0, 0, 1], 7070),
                port("web", [127, 0, 0, 1], 9090),
            ],
        )
    });
    assert!(res.is_err());
    let web_ports = s.transaction(|tx| tx.container_ports("web"))?;
    assert_eq!(web_ports, [port("web", [127, 0, 0, 1], 8080)]);
    s.transaction(|tx| tx.set_container_ports("web", &[port("web", [127, 0, 0, 1], 7070)]))?;
    let web_ports = s.transaction(|tx| tx.container_ports("web"))?;
    assert_eq!(web_ports, [port("web", [127, 0, 0, 1], 7070)]);
    assert_eq!(s.transaction(|tx| tx.port_bindings())?.len(), 4);
    Ok(())
}

#[test]
fn removing_a_container_releases_addresses_ports_and_its_links() -> TestResult {
    let mut s = populated()?;
    s.transaction(|tx| {
        tx.upsert_container(&container("cache", 1))?;
        tx.allocate_ip("n1", "web", candidates(), 1)?;
        tx.allocate_ip("n1", "db", candidates(), 1)?;
        tx.bind_port(&port("web", [127, 0, 0, 1], 8080))?;
        tx.add_link(&LinkRecord {
            parent: "web".into(),
            child: "db".into(),
            alias: "database".into(),
        })?;
        tx.add_link(&LinkRecord {
            parent: "web".into(),
            child: "cache".into(),
            alias: "cache".into(),
        })
    })?;
    // db is linked by web: removal refused (targets go after their users).
    let err = s.transaction(|tx| tx.delete_container("db")).err();
    match &err {
        Some(e @ Error::ContainerLinked { .. }) => {
            assert_eq!(
                e.to_string(),
                "container db is linked by web (as database); remove or relink them first"
            )
        }
        other => panic!("expected ContainerLinked, got {other:?}"),
    }
    // The FK is the backstop even without the check.
    let raw = s
        .conn
        .execute("DELETE FROM containers WHERE name = 'db'", []);
    assert!(raw.is_err());

    assert!(s.transaction(|tx| tx.delete_container("web"))?);
    let (ips, ports, links) = s.transaction(|tx| {
        Ok::<_, Error>((tx.ip_allocations("n1")?, tx.port_bindings()?, tx.links()?))
    })?;
    assert_eq!(
        ips.iter().map(|a| a.container.as_str()).collect::<Vec<_>>(),
        ["db"]
    );
    assert!(ports.is_empty());
    assert!(links.is_empty());
    // Now db can go; deleting again is success (false: nothing was there).
    assert!(s.transaction(|tx| tx.delete_container("db"))?);
    assert!(!s.transaction(|tx| tx.delete_container("db"))?);
    assert!(s.transaction(|tx| tx.ip_allocations("n1"))?.is_empty());
    assert!(s.check_integrity()?.is_empty());
    Ok(())
}

#[test]
fn links_form_an_acyclic_graph() -> TestResult {
    let mut s = populated()?;
    s.transaction(|tx| {
        tx.upsert_container(&container("cache", 1))?;
        tx.add_link(&LinkRecord {
            parent: "web".into(),
            child: "db".into(),
            alias: "db".into(),
        })?;
        tx.add_link(&LinkRecord {
            parent: "db".into(),
            child: "cache".into(),
            alias: "c".into(),
        })
    })?;
    let err = s
        .transaction(|tx| {
            tx.add_link(&LinkRecord {
                parent: "cache".into(),
                child: "web".into(),
                alias: "w".into(),
            })
        })
        .err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("cycle"), "{text}");
    let err = s
        .transaction(|tx| {
            tx.add_link(&LinkRecord {
                parent: "web".into(),
                child: "web".into(),
                alias: "me".into(),
            })
        })
        .err();
    assert!(matches!(err, Some(Error::Invalid { .. })), "{err:?}");
    let err = s
        .transaction(|tx| {
            tx.add_link(&LinkRecord {
                parent: "web".into(),
                child: "ghost".into(),
                alias: "g".into(),
            })
        })
        .err();
    assert!(matches!(err, Some(Error::NotFound { .. })), "{err:?}");

    // Re-pointing an alias and replacing the whole set.
    s.transaction(|tx| {
        tx.add_link(&LinkRecord {
            parent: "web".into(),
            child: "cache".into(),
            alias: "db".into(),
        })
    })?;
    let from_web = s.transaction(|tx| tx.links_from("web"))?;
    assert_eq!(
        from_web,
        [LinkRecord {
            parent: "web".into(),
            child: "cache".into(),
            alias: "db".into()
        }]
    );
    let to_cache = s.transaction(|tx| tx.links_to("cache"))?;
    assert_eq!(to_cache.len(), 2);
    s.transaction(|tx| tx.set_links("web", &[]))?;
    assert!(s.transaction(|tx| tx.links_from("web"))?.is_empty());
    assert!(s.transaction(|tx| tx.remove_link("db", "c"))?);
    assert!(!s.transaction(|tx| tx.remove_link("db", "c"))?);
    Ok(())
}

#[test]
fn networks_in_use_are_kept() -> TestResult {
    let mut s = populated()?;
    s.transaction(|tx| tx.allocate_ip("n1", "web", candidates(), 1))?;
    let err = s.transaction(|tx| tx.delete_network("n1")).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("network n1 still has addresses of containers web; remove them first")
    );
    let err = s
        .transaction(|tx| tx.upsert_network(&network("n2", "br-n1")))
        .err();
    assert!(matches!(err, Some(Error::Invalid { .. })), "{err:?}");
    s.transaction(|tx| {
        tx.delete_container("web")?;
        tx.delete_network("n1")
    })?;
    assert!(s.transaction(|tx| tx.networks())?.is_empty());
    Ok(())
}

#[test]
fn networks_round_trip() -> TestResult {
    let mut s = Store::open_in_memory()?;
    let mut n = network("n1", "br-n1");
    s.transaction(|tx| tx.upsert_network(&n))?;
    n.gateway = None;
    n.subnet = "10.78.0.0/24".into();
    s.transaction(|tx| tx.upsert_network(&n))?;
    assert_eq!(s.transaction(|tx| tx.network("n1"))?, Some(n.clone()));
    assert_eq!(s.transaction(|tx| tx.network_by_bridge("br-n1"))?, Some(n));
    Ok(())
}

#[test]
fn images_and_layers() -> TestResult {
    let mut s = Store::open_in_memory()?;
    let base = LayerRecord {
        chain_id: "sha256:c1".into(),
        diff_id: "sha256:d1".into(),
        parent: None,
        size: 10,
        created_at: 1,
    };
    let top = LayerRecord {
        chain_id: "sha256:c2".into(),
        diff_id: "sha256:d2".into(),
        parent: Some("sha256:c1".into()),
        size: 20,
        created_at: 2,
    };
    let err = s.transaction(|tx| tx.upsert_layer(&top)).err();
    assert!(matches!(err, Some(Error::NotFound { .. })), "{err:?}");
    s.transaction(|tx| {
        tx.upsert_layer(&base)?;
        tx.upsert_layer(&top)
    })?;
    let err = s.transaction(|tx| tx.delete_layer("sha256:c1")).err();
    assert!(matches!(err, Some(Error::LayerInUse { .. })), "{err:?}");
    assert_eq!(
        s.transaction(|tx| tx.layers())?,
        [base.clone(), top.clone()]
    );

    let img = ImageRecord {
        reference: "localhost:5000/web:1.4".into(),
        digest: "sha256:ab12".into(),
        config: json!({"config": {"Cmd": ["/bin/sh"]}}),
        size: u64::from(u32::MAX) + 7,
        created_at: 3,
    };
    let alias = ImageRecord {
        reference: "web".into(),
        ..img.clone()
    };
    s.transaction(|tx| {
        tx.upsert_image(&img)?;
        tx.upsert_image(&alias)
    })?;
    assert_eq!(
        s.transaction(|tx| tx.image("localhost:5000/web:1.4"))?,
        Some(img.clone())
    );
    assert_eq!(
        s.transaction(|tx| tx.images_by_digest("sha256:ab12"))?
            .len(),
        2
    );
    assert!(s.transaction(|tx| tx.delete_image("web"))?);
    assert_eq!(s.transaction(|tx| tx.images())?, [img]);
    let err = s
        .transaction(|tx| {
            tx.upsert_image(&ImageRecord {
                size: u64::MAX,
                ..alias.clone()
            })
        })
        .err();
    assert!(matches!(err, Some(Error::Invalid { .. })), "{err:?}");
    s.transaction(|tx| {
        tx.delete_layer("sha256:c2")?;
        tx.delete_layer("sha256:c1")
    })?;
    Ok(())
}

#[test]
fn volumes_round_trip() -> TestResult {
    let mut s = Store::open_in_memory()?;
    let v = VolumeRecord {
        name: "shop-data".into(),
        driver_path: "/var/lib/agent/volumes/shop-data".into(),
        reclaim: Reclaim::Delete,
        labels: BTreeMap::from([("app".to_string(), "shop".to_string())]),
        created_at: 4,
    };
    s.transaction(|tx| tx.upsert_volume(&v))?;
    assert_eq!(s.transaction(|tx| tx.volume("shop-data"))?, Some(v.clone()));
    assert_eq!(s.transaction(|tx| tx.volumes())?, [v]);
    assert!(s.transaction(|tx| tx.delete_volume("shop-data"))?);
    assert!(!s.transaction(|tx| tx.delete_volume("shop-data"))?);
    Ok(())
}

#[test]
fn a_failed_load_keeps_the_last_good_manifest() -> TestResult {
    let mut s = Store::open_in_memory()?;
    let objects = json!([{"kind": "Container", "name": "web"}]);
    s.transaction(|tx| tx.record_manifest_loaded("/etc/agent.d/web.yaml", "h1", &objects, 10))?;
    assert!(s.transaction(|tx| tx.record_manifest_applied("/etc/agent.d/web.yaml", 11))?);
    s.transaction(|tx| {
        tx.record_manifest_error("/etc/agent.d/web.yaml", "web.yaml:3:5: unknown field", 12)
    })?;
    let m = s
        .transaction(|tx| tx.manifest_file("/etc/agent.d/web.yaml"))?
        .ok_or("missing")?;
    assert_eq!(
        m,
        ManifestFileRecord {
            path: "/etc/agent.d/web.yaml".into(),
            content_hash: Some("h1".into()),
            objects: objects.clone(),
            last_error: Some("web.yaml:3:5: unknown field".into()),
            loaded_at: Some(12),
            applied_at: Some(11),
        }
    );
    s.transaction(|tx| tx.record_manifest_loaded("/etc/agent.d/web.yaml", "h2", &json!([]), 13))?;
    let m = s
        .transaction(|tx| tx.manifest_file("/etc/agent.d/web.yaml"))?
        .ok_or("missing")?;
    assert_eq!(
        (m.content_hash.as_deref(), m.last_error.as_deref()),
        (Some("h2"), None)
    );
    // A file that never loaded: an error, no last good version.
    s.transaction(|tx| tx.record_manifest_error("/etc/agent.d/bad.yaml", "bad", 14))?;
    let files = s.transaction(|tx| tx.manifest_files())?;
    assert_eq!(files.len(), 2);
    assert_eq!(
        (files[0].content_hash.as_deref(), &files[0].objects),
        (None, &json!([]))
    );
    assert!(s.transaction(|tx| tx.delete_manifest_file("/etc/agent.d/bad.yaml"))?);
    assert!(!s.transaction(|tx| tx.record_manifest_applied("/etc/agent.d/bad.yaml", 15))?);
    let full = ManifestFileRecord {
        applied_at: Some(99),
        ..m
    };
    s.transaction(|tx| tx.upsert_manifest_file(&full))?;
    assert_eq!(
        s.transaction(|tx| tx.manifest_file("/etc/agent.d/web.yaml"))?,
        Some(full)
    );
    Ok(())
}

#[test]
fn intents_are_pending_until_finished() -> TestResult {
    let mut s = Store::open_in_memory()?;
    let new = |kind: &str| NewIntent {
        kind: kind.into(),
        object: "container/web".into(),
        payload: json!({"id": "abc"}),
    };
    let (a, b) = s.transaction(|tx| {
        Ok::<_, Error>((
            tx.begin_intent(&new("create"), 1)?,
            tx.begin_intent(&new("start"), 2)?,
        ))
    })?;
    assert!(b > a);
    let pending = s.transaction(|tx| tx.pending_intents())?;
    assert_eq!(
        pending.iter().map(|i| i.kind.as_str()).collect::<Vec<_>>(),
        ["create", "start"]
    );
    assert_eq!(pending[0].payload, json!({"id": "abc"}));
    assert!(s.transaction(|tx| tx.finish_intent(a))?);
    assert!(!s.transaction(|tx| tx.finish_intent(a))?);
    assert_eq!(
        s.transaction(|tx| tx.intent(b))?.map(|i| i.started_at),
        Some(2)
    );
    assert_eq!(s.transaction(|tx| tx.pending_intents())?.len(), 1);
    Ok(())
}

fn event(i: i64) -> NewEvent {
    NewEvent {
        time: i,
        kind: "test".into(),
        object: format!("container/c{}", i % 3),
        message: json!({"n": i}),
    }
}

#[test]
fn the_event_log_keeps_the_newest_events() -> TestResult {
    let mut s = Store::open_in_memory()?;
    s.set_options(Options {
        event_cap: 10,
        ..Options::default()
    })?;
    for i in 1..=35 {
        s.transaction(|tx| tx.append_event(&event(i)))?;
    }
    // Cap 10: trimmed on every insert, exactly the newest 10 remain.
    let all = s.transaction(|tx| tx.events_after(None, 100))?;
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        (26..=35).collect::<Vec<_>>()
    );
    let recent = s.transaction(|tx| tx.recent_events(Some("container/c0"), 2))?;
    assert_eq!(recent.iter().map(|e| e.time).collect::<Vec<_>>(), [30, 33]);
    let after = s.transaction(|tx| tx.events_after(Some(33), 10))?;
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), [34, 35]);
    assert_eq!(s.transaction(|tx| tx.recent_events(None, 3))?.len(), 3);

    // Cap 1000: trimmed every 10 inserts, so between 1000 and 1010 remain, the newest ones.
    s.set_options(Options {
        event_cap: 1000,
        ..Options::default()
    })?;
    s.transaction(|tx| {
        for i in 36..=3000 {
            tx.append_event(&event(i))?;
            let n = tx.event_count()?;
            assert!(n <= 1000 + 10, "{n} events after insert {i}");
        }
        Ok::<_, Error>(())
    })?;
    let all = s.transaction(|tx| tx.events_after(None, 5000))?;
    assert!((1000..=1010).contains(&all.len()), "{}", all.len());
    assert_eq!(all.last().map(|e| e.id), Some(3000));
    assert!(
        all.windows(2).all(|w| w[1].id == w[0].id + 1),
        "the kept events are contiguous"
    );
    Ok(())
}

#[test]
fn the_default_cap_trims_in_batches_of_a_hundred() {
    assert_eq!(events::trim_interval(DEFAULT_EVENT_CAP), 100);
    assert_eq!(events::trim_interval(1), 1);
    assert_eq!(events::trim_interval(150), 1);
}

#[test]
fn network_attachments_are_kept_by_container_id() -> TestResult {
    let mut s = Store::open_in_memory()?;
    let rec = json!({"container_id": "abc", "complete": false, "endpoints": []});
    s.transaction(|tx| tx.put_network_attachment("abc", &rec, 1))?;
    let done = json!({"container_id": "abc", "complete": true, "endpoints": []});
    s.transaction(|tx| {
        tx.put_network_attachment("abc", &done, 2)?;
        tx.put_network_attachment("def", &rec, 3)
    })?;
    let got = s
        .transaction(|tx| tx.network_attachment("abc"))?
        .ok_or("missing")?;
    assert_eq!((got.record, got.updated_at), (done, 2));
    let ids: Vec<_> = s
        .transaction(|tx| tx.network_attachments())?
        .into_iter()
        .map(|a| a.container_id)
        .collect();
    assert_eq!(ids, ["abc", "def"]);
    assert!(s.transaction(|tx| tx.remove_network_attachment("abc"))?);
    assert!(!s.transaction(|tx| tx.remove_network_attachment("abc"))?);
    Ok(())
}

#[test]
fn a_publication_can_move_to_another_host_port() -> TestResult {
    let mut s = populated()?;
    s.transaction(|tx| {
        tx.bind_port(&port("web", [0, 0, 0, 0], 30001))?;
        tx.bind_port(&PortBinding {
            container_port: 443,
            ..port("web", [0, 0, 0, 0], 30002)
        })?;
        tx.bind_port(&port("db", [0, 0, 0, 0], 30003))
    })?;
    s.transaction(|tx| tx.replace_port_binding(&port("web", [0, 0, 0, 0], 30004)))?;
    let web: Vec<_> = s
        .transaction(|tx| tx.container_ports("web"))?
        .into_iter()
        .map(|b| (b.host_port, b.container_port))
        .collect();
    assert_eq!(web, [(30002, 443), (30004, 80)]);
    // Moving onto a port someone else holds fails and keeps the old binding.
    let err = s
        .transaction(|tx| tx.replace_port_binding(&port("web", [0, 0, 0, 0], 30003)))
        .err();
    assert!(
        matches!(err, Some(Error::PortAlreadyBound { .. })),
        "{err:?}"
    );
    assert_eq!(s.transaction(|tx| tx.container_ports("web"))?.len(), 2);

    s.transaction(|tx| {
        tx.upsert_network(&network("n2", "br-n2"))?;
        tx.allocate_ip("n2", "web", candidates(), 1)?;
        tx.allocate_ip("n1", "web", candidates(), 1)?;
        tx.allocate_ip("n1", "db", candidates(), 1)
    })?;
    let all: Vec<_> = s
        .transaction(|tx| tx.all_ip_allocations())?
        .into_iter()
        .map(|a| format!("{} {} {}", a.network, a.container, a.ip))
        .collect();
    assert_eq!(
        all,
        ["n1 db 10.77.0.3", "n1 web 10.77.0.2", "n2 web 10.77.0.2"]
    );
    Ok(())
}

/// Bytes of page cache the connection holds (`SQLITE_DBSTATUS_CACHE_USED`).
fn cache_used(s: &Store) -> i32 {
    let (mut cur, mut hi) = (0, 0);
    // SAFETY: the handle is the open connection's, used on this thread only, and the two out
    // pointers are valid for the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            s.conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
            &mut cur,
            &mut hi,
            0,
        )
    };
    assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
    cur
}

#[test]
fn the_page_cache_is_capped_and_released_when_idle() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut s = Store::open(&tmp.path().join("state"))?;
    // About 4 MiB of events: twice what SQLite's default cache would keep.
    s.set_options(Options {
        event_cap: 100_000,
        ..Options::default()
    })?;
    let message = "x".repeat(1_000);
    for batch in 0..40 {
        s.transaction(|tx| {
            for i in 0..100 {
                tx.append_event(&NewEvent {
                    time: batch * 100 + i,
                    kind: "test".into(),
                    object: "o".into(),
                    message: json!({ "reason": message }),
                })?;
            }
            Ok::<_, Error>(())
        })?;
    }
    let n: i64 = s.conn.query_row(
        "SELECT count(*) FROM events WHERE length(message) > 100",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(n, 4_000);
    let full = cache_used(&s);
    // The cap plus SQLite's per-page headers.
    assert!(
        full <= (CACHE_KIB as i32) * 1024 * 3 / 2,
        "cache holds {full} bytes"
    );
    assert!(full > 64 * 1024, "the scan filled the cache ({full} bytes)");
    s.release_memory()?;
    let idle = cache_used(&s);
    assert!(idle < full / 4, "released: {full} -> {idle} bytes");
    Ok(())
}
