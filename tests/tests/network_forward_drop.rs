//! Issue 16.1 (root): on a host with Docker's firewall set-up (br_netfilter loaded,
//! `net.bridge.bridge-nf-call-iptables=1`, iptables' `FORWARD` policy `DROP`), containers on the
//! agent's bridges still talk to each other, `icc: false` still blocks unlinked traffic, the
//! driver reports nothing wrong, and when its accept rules are gone it says so and traffic is
//! indeed dropped. Both firewall backends.
//!
//! The test changes two host-wide settings; it sets them only after every container and server
//! is up, restores the old values as soon as the checks are done, and in `Drop` even when a check
//! fails. Traffic goes only to the test's own namespaces.

#![allow(clippy::unwrap_used)]

use agent::driver::network::firewall::host;
use agent::driver::network::{Attachment, FirewallChoice, LinkRequest, NetworkMode, Protocol};
use agent_e2e::network::*;

/// One backend's set-up: a network with icc (a, b serving) and one without (db serving, app
/// linked to it, stranger).
struct Setup {
    t: TestNet,
    a: Attachment,
    b: Attachment,
    db: Attachment,
    app: Attachment,
    stranger: Attachment,
}

fn setup(fw: FirewallChoice) -> Setup {
    let mut t = TestNet::new(fw, true);
    let closed = t.add_network("closed", false);
    let a = t.attach(&t.req("a", vec![]));
    let b = t.attach(&t.req("b", vec![]));
    let on_closed = |t: &TestNet, id: &str, links: Vec<LinkRequest>| {
        let mut r = t.req(id, vec![]);
        r.mode = NetworkMode::Bridge(vec![closed.name.clone()]);
        r.links = links;
        t.attach(&r)
    };
    let db = on_closed(&t, "db", vec![]);
    let link = LinkRequest {
        target_name: "db".into(),
        alias: Some("db".into()),
        target_ip: db.endpoints[0].ip,
        target_ports: vec![(80, Protocol::Tcp)],
        target_env: Vec::new(),
    };
    let app = on_closed(&t, "app", vec![link]);
    let stranger = on_closed(&t, "stranger", vec![]);
    t.http_server(&b, 8080, "from-b");
    t.http_server(&db, 80, "from-db");
    Setup {
        t,
        a,
        b,
        db,
        app,
        stranger,
    }
}

fn url(att: &Attachment, port: u16) -> String {
    format!("http://{}:{port}/", att.endpoints[0].ip)
}

/// The checks while the host drops forwarded traffic by policy.
fn check(s: &Setup, fw: FirewallChoice) {
    assert_eq!(
        wget_in(&s.a, &url(&s.b, 8080)).as_deref(),
        Some("from-b"),
        "{fw:?}: containers on one bridge cannot talk under FORWARD policy DROP"
    );
    assert_eq!(
        wget_in(&s.app, &url(&s.db, 80)).as_deref(),
        Some("from-db"),
        "{fw:?}: a link on an icc: false bridge"
    );
    assert_eq!(
        wget_in(&s.stranger, &url(&s.db, 80)),
        None,
        "{fw:?}: icc: false must still block unlinked traffic"
    );
    let problems = s.t.driver.forward_problems().unwrap();
    assert!(problems.is_empty(), "{fw:?}: {problems:?}");
}

#[test]
fn containers_talk_when_iptables_forward_policy_is_drop() {
    let test = "containers_talk_when_iptables_forward_policy_is_drop";
    if !can_run(test, FirewallChoice::Nftables)
        || !can_run(test, FirewallChoice::Iptables)
        || !br_netfilter()
    {
        return;
    }
    let nft = setup(FirewallChoice::Nftables);
    let ipt = setup(FirewallChoice::Iptables);
    let instance = nft.t.opts.instance.clone();

    let mut host = DockerLikeHost::set();
    check(&nft, FirewallChoice::Nftables);
    check(&ipt, FirewallChoice::Iptables);
    // Without the accepts (removed by hand), the nftables backend's containers are cut off and
    // the driver says why.
    host::sync_accepts(&instance, &[]).unwrap();
    let cut_off = wget_in(&nft.a, &url(&nft.b, 8080));
    let problems = nft.t.driver.forward_problems().unwrap();
    nft.t.driver.sync_firewall().unwrap();
    let back = wget_in(&nft.a, &url(&nft.b, 8080));
    host.restore();

    assert_eq!(
        cut_off, None,
        "the host set-up does not drop: the test proves nothing"
    );
    assert!(
        problems.len() == 1 && problems[0].contains("FORWARD policy is DROP"),
        "{problems:?}"
    );
    assert!(problems[0].contains(&nft.t.net.bridge), "{problems:?}");
    assert_eq!(
        back.as_deref(),
        Some("from-b"),
        "accepts put back by a sync"
    );

    // The accepts are tagged, listed with the instance's rules, and go with the networks.
    let listed = nft.t.firewall_listing();
    assert!(listed.contains(&format!("agent:{instance}")), "{listed}");
    for id in ["a", "b", "db", "app", "stranger"] {
        nft.t.driver.release(id).unwrap();
    }
    nft.t.driver.remove_network("closed").unwrap();
    nft.t.driver.remove_network(&nft.t.net.name).unwrap();
    assert_eq!(host::list_accepts(&instance), "", "accept rules left");
    assert_eq!(nft.t.firewall_listing(), "", "rules left");
}
