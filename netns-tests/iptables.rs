//! The iptables backends against the real kernel, legacy and nft variants, in throwaway network
//! namespaces: for each ruleset in rulesets/*.rules, the support host reaches every SSH port over
//! IPv4 and IPv6 after `open` and the stranger does not; after `close` the support host is shut
//! out again and `*-save` (counters stripped) equals the ruleset before; a grant with a duration
//! ends by itself.
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use ovh_access::firewall::detect::{self, FirewallFacts, LayerKind};
use ovh_access::firewall::iptables::save::strip_volatile;
use ovh_access::firewall::iptables::{legacy_tables, Family, IptablesBackend, Variant};
use ovh_access::firewall::FirewallChoice;
use ovh_access::firewall::{Backend, Mode, OpenRequest};
use ovh_access::root::Root;

use crate::common::*;

const PORTS: [u16; 2] = [22, 2222];
const SRV_V4: &str = "192.0.2.1";
const SUP_V4: &str = "192.0.2.2";
const SRV_V6: &str = "2001:db8:1::1";
const SUP_V6: &str = "2001:db8:1::2";
const SRV_V4_STRANGER_SIDE: &str = "198.51.100.1";
const SRV_V6_STRANGER_SIDE: &str = "2001:db8:2::1";

type Lab = ListenerLab;

impl ListenerLab {
    /// Server, support host and stranger; the server listens on every SSH port (IPv4 and IPv6).
    fn iptables() -> Lab {
        ListenerLab::new(
            ["oa-ipt-srv", "oa-ipt-sup", "oa-ipt-str"],
            &["192.0.2.1/24", "2001:db8:1::1/64"],
            &["192.0.2.2/24", "2001:db8:1::2/64"],
            &["198.51.100.1/24", "2001:db8:2::1/64"],
            &["198.51.100.2/24", "2001:db8:2::2/64"],
            &PORTS,
        )
    }

    /// Load an iptables-save file into one layer of the server.
    fn load(&self, backend: IptablesBackend, file: &str) {
        run(self
            .srv
            .cmd(backend.program("restore"))
            .arg(ruleset_path(file)));
    }

    fn save(&self, backend: IptablesBackend) -> String {
        strip_volatile(
            &String::from_utf8(run(&mut self.srv.cmd(backend.program("save"))).stdout).unwrap(),
        )
    }

    /// Does the support host get through to every port (IPv4, and IPv6 when `v6`)?
    fn support_reaches_all(&self, v6: bool) -> bool {
        PORTS.iter().all(|p| {
            tcp_connects(&self.sup, SRV_V4, *p) && (!v6 || tcp_connects(&self.sup, SRV_V6, *p))
        })
    }

    /// Does any connection from the support host get through (first port, both families)?
    fn support_reaches_any(&self, v6: bool) -> bool {
        std::thread::scope(|s| {
            let a = s.spawn(|| tcp_connects(&self.sup, SRV_V4, PORTS[0]));
            let b = s.spawn(|| v6 && tcp_connects(&self.sup, SRV_V6, PORTS[0]));
            a.join().unwrap() | b.join().unwrap()
        })
    }

    /// Does the stranger get through to any port? (In parallel: each refusal costs the 2 s timeout.)
    fn stranger_reaches_any(&self, v6: bool) -> bool {
        std::thread::scope(|s| {
            let mut hs = Vec::new();
            for p in PORTS {
                hs.push(s.spawn(move || tcp_connects(&self.stranger, SRV_V4_STRANGER_SIDE, p)));
                if v6 {
                    hs.push(s.spawn(move || tcp_connects(&self.stranger, SRV_V6_STRANGER_SIDE, p)));
                }
            }
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<bool>>()
                .contains(&true)
        })
    }

    /// Detect the layers in the server namespace, as `--firewall auto` would.
    fn detect(&self, choice: FirewallChoice) -> (FirewallFacts, anyhow::Result<Vec<LayerKind>>) {
        let nft_text = self.srv.ruleset();
        let sandbox = tempfile::tempdir().unwrap();
        let root = Root::new(sandbox.path()).unwrap();
        let mut facts = in_netns(&self.srv, move || detect::gather_facts_except_nft_in(&root));
        facts.nft_tables = detect::nft_tables_from_ruleset(&nft_text);
        let layers = detect::layers(choice, &facts);
        (facts, layers)
    }
}

fn request(timeout: Option<Duration>) -> OpenRequest {
    OpenRequest {
        addresses: [SUP_V4, SUP_V6]
            .iter()
            .map(|a| a.parse::<IpAddr>().unwrap())
            .collect(),
        ports: PORTS.to_vec(),
        timeout,
    }
}

fn backends(layers: &[LayerKind]) -> Vec<IptablesBackend> {
    layers
        .iter()
        .filter_map(|l| match l {
            LayerKind::Iptables(v, f) => Some(IptablesBackend::new(*v, *f)),
            LayerKind::Nft | LayerKind::Firewalld => None,
        })
        .collect()
}

/// Stand-in for the nftables backend (built on another branch) in the mixed scenarios: the
/// accept, inserted at the head of the table's input chain and removed by handle. What is under
/// test here is that *both* layers must open and that detection finds both.
struct NftStandIn {
    handles: Vec<u64>,
}

impl NftStandIn {
    fn open(lab: &Lab) -> NftStandIn {
        let mut handles = Vec::new();
        for (fam, addr) in [("ip", SUP_V4), ("ip6", SUP_V6)] {
            let out = lab.srv.sh(&format!(
                "nft --echo --handle insert rule inet filter input {fam} saddr {addr} tcp dport '{{ 22, 2222 }}' accept"
            ));
            let text = String::from_utf8(out.stdout).unwrap();
            let handle = text
                .lines()
                .find_map(|l| l.rsplit_once("# handle ")?.1.trim().parse().ok());
            handles
                .push(handle.unwrap_or_else(|| panic!("no handle in nft --echo output: {text}")));
        }
        NftStandIn { handles }
    }

    fn close(self, lab: &Lab) {
        for h in self.handles {
            lab.srv
                .sh(&format!("nft delete rule inet filter input handle {h}"));
        }
    }
}

/// The nft table of the mixed scenarios: default deny, ICMPv6 for neighbour discovery.
const NFT_INET_DROP: &str = "table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    iif lo accept
    ct state established,related accept
    meta l4proto ipv6-icmp accept
    tcp dport 443 accept
  }
}
";

/// One scenario: load the layers' rulesets (and optionally an nft table), check detection, open
/// every iptables layer found, check who gets through, close, check the rulesets came back.
struct Scenario {
    /// (layer, ruleset file) pairs loaded into the server.
    loads: &'static [(Variant, Family, &'static str)],
    nft: Option<&'static str>,
    /// The layers `--firewall auto` must find.
    expect: &'static [LayerKind],
    /// Whether the firewall filters IPv6 (else only IPv4 connects are checked).
    v6: bool,
}

fn run_scenario(test: &str, sc: &Scenario) {
    let lab = Lab::iptables();
    for (v, f, file) in sc.loads {
        lab.load(IptablesBackend::new(*v, *f), file);
    }
    if let Some(nft) = sc.nft {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), nft).unwrap();
        lab.srv.load_nft(file.path());
    }
    let (_facts, layers) = lab.detect(FirewallChoice::Auto);
    let layers = layers.unwrap();
    assert_eq!(layers, sc.expect, "{test}: detected layers");
    let mut bes = backends(&layers);
    let before: Vec<String> = bes.iter().map(|b| lab.save(*b)).collect();
    let nft_before = lab.srv.ruleset();
    assert!(
        !lab.support_reaches_any(sc.v6),
        "{test}: the ruleset should shut the support host out before the grant"
    );

    // A dry run shows the restore input and changes nothing.
    for b in &mut bes {
        let mut b2 = *b;
        let dry = in_netns(&lab.srv, move || b2.open(&request(None), &[], Mode::DryRun)).unwrap();
        assert!(
            dry.changed && dry.script.starts_with("*filter\n") && dry.script.ends_with("COMMIT\n"),
            "{test}: {dry:?}"
        );
        assert!(
            dry.script
                .contains("-I INPUT 1 -m comment --comment ovh-access -j OVH-ACCESS"),
            "{test}: {}",
            dry.script
        );
    }
    assert_eq!(
        bes.iter().map(|b| lab.save(*b)).collect::<Vec<_>>(),
        before,
        "{test}: a dry run changed the ruleset"
    );

    let mut changes = Vec::new();
    for b in &bes {
        let mut b2 = *b;
        changes.push(
            in_netns(&lab.srv, move || b2.open(&request(None), &[], Mode::Apply))
                .unwrap_or_else(|e| panic!("{test}: open: {e:#}")),
        );
    }
    for c in &changes {
        assert!(c.changed, "{test}: {c:?}");
        assert!(
            c.chains.contains(&"filter INPUT".to_string()),
            "{test}: {c:?}"
        );
    }
    let stand_in = layers.contains(&LayerKind::Nft).then(|| {
        // Only the iptables layers are open: the nft table still drops (both hooks must accept).
        assert!(
            !lab.support_reaches_any(sc.v6),
            "{test}: the nft layer dropped nothing?"
        );
        NftStandIn::open(&lab)
    });
    assert!(
        lab.support_reaches_all(sc.v6),
        "{test}: the support host is still shut out after open"
    );
    assert!(
        !lab.stranger_reaches_any(sc.v6),
        "{test}: the stranger got through"
    );

    // Open again with the same request: found as it should be, nothing to do.
    for b in &bes {
        let mut b2 = *b;
        let again = in_netns(&lab.srv, move || b2.open(&request(None), &[], Mode::Apply)).unwrap();
        assert!(
            !again.changed && again.script.is_empty(),
            "{test}: second open: {again:?}"
        );
        let st = in_netns(&lab.srv, move || b2.state()).unwrap();
        assert_eq!(
            st.jumps.iter().filter(|j| j.chain == "INPUT").count(),
            1,
            "{test}: {st:?}"
        );
        assert!(st.jumps.iter().all(|j| j.at_head), "{test}: {st:?}");
    }

    if let Some(s) = stand_in {
        s.close(&lab);
    }
    for b in &bes {
        let mut b2 = *b;
        let c = in_netns(&lab.srv, move || b2.close(&[], Mode::Apply))
            .unwrap_or_else(|e| panic!("{test}: close: {e:#}"));
        assert!(c.changed, "{test}: {c:?}");
        let again = in_netns(&lab.srv, move || b2.close(&[], Mode::Apply)).unwrap();
        assert!(
            !again.changed,
            "{test}: a second close found something: {again:?}"
        );
    }
    assert!(
        !lab.support_reaches_any(sc.v6),
        "{test}: the support host still gets in after close"
    );
    let after: Vec<String> = bes.iter().map(|b| lab.save(*b)).collect();
    assert_eq!(
        after, before,
        "{test}: the ruleset after close differs from the one before"
    );
    assert_eq!(
        without_counters(&lab.srv.ruleset()),
        without_counters(&nft_before),
        "{test}: nft ruleset"
    );
}

/// `nft list ruleset` without the values of `counter packets N bytes M`: iptables-nft puts a
/// counter in every rule and the test's own traffic moves them.
fn without_counters(text: &str) -> String {
    let mut out = Vec::new();
    let mut skip = 0;
    for word in text.split(' ') {
        if skip > 0 {
            skip -= 1;
            // Keep the line break that may follow the last number.
            if let Some(i) = word.find(|c: char| !c.is_ascii_digit()) {
                out.push(&word[i..]);
            }
            continue;
        }
        if word == "packets" || word == "bytes" {
            skip = 1;
        }
        out.push(word);
    }
    out.join(" ")
}

const LEGACY_V4: LayerKind = LayerKind::Iptables(Variant::Legacy, Family::V4);
const LEGACY_V6: LayerKind = LayerKind::Iptables(Variant::Legacy, Family::V6);
const XT_V4: LayerKind = LayerKind::Iptables(Variant::Nft, Family::V4);
const XT_V6: LayerKind = LayerKind::Iptables(Variant::Nft, Family::V6);

#[test]
fn iptables_legacy_input_drop() {
    if !can_run("iptables_legacy_input_drop") {
        return;
    }
    run_scenario(
        "legacy",
        &Scenario {
            loads: &[
                (Variant::Legacy, Family::V4, "legacy-input-drop.v4.rules"),
                (Variant::Legacy, Family::V6, "legacy-input-drop.v6.rules"),
            ],
            nft: None,
            expect: &[LEGACY_V4, LEGACY_V6],
            v6: true,
        },
    );
}

#[test]
fn iptables_nft_input_drop() {
    if !can_run("iptables_nft_input_drop") {
        return;
    }
    // The tables are nf_tables tables made by iptables-nft: they go to the iptables backend,
    // never to native nft rules.
    run_scenario(
        "iptables-nft",
        &Scenario {
            loads: &[
                (Variant::Nft, Family::V4, "nft-input-drop.v4.rules"),
                (Variant::Nft, Family::V6, "nft-input-drop.v6.rules"),
            ],
            nft: None,
            expect: &[XT_V4, XT_V6],
            v6: true,
        },
    );
}

#[test]
fn iptables_ufw() {
    if !can_run("iptables_ufw") {
        return;
    }
    run_scenario(
        "ufw",
        &Scenario {
            loads: &[
                (Variant::Nft, Family::V4, "ufw.v4.rules"),
                (Variant::Nft, Family::V6, "ufw.v6.rules"),
            ],
            nft: None,
            expect: &[XT_V4, XT_V6],
            v6: true,
        },
    );
}

#[test]
fn iptables_output_drop() {
    if !can_run("iptables_output_drop") {
        return;
    }
    run_scenario(
        "output-drop",
        &Scenario {
            loads: &[(Variant::Legacy, Family::V4, "output-drop.v4.rules")],
            nft: None,
            expect: &[LEGACY_V4],
            v6: false,
        },
    );
}

#[test]
fn iptables_legacy_drop_and_nft_drop() {
    if !can_run("iptables_legacy_drop_and_nft_drop") {
        return;
    }
    run_scenario(
        "legacy+nft",
        &Scenario {
            loads: &[
                (Variant::Legacy, Family::V4, "legacy-input-drop.v4.rules"),
                (Variant::Legacy, Family::V6, "legacy-input-drop.v6.rules"),
            ],
            nft: Some(NFT_INET_DROP),
            expect: &[LEGACY_V4, LEGACY_V6, LayerKind::Nft],
            v6: true,
        },
    );
}

#[test]
fn iptables_legacy_accept_only_nft_drops() {
    if !can_run("iptables_legacy_accept_only_nft_drops") {
        return;
    }
    // `iptables` (legacy here) shows tables, yet the drop is in nftables: detection must not
    // stop at the alternative's layer.
    run_scenario(
        "legacy-accept+nft",
        &Scenario {
            loads: &[(Variant::Legacy, Family::V4, "legacy-accept.v4.rules")],
            nft: Some(NFT_INET_DROP),
            expect: &[LEGACY_V4, LayerKind::Nft],
            v6: true,
        },
    );
}

/// A grant with a duration: the kernel (xt_time, or nft's meta time for iptables-nft) stops
/// matching at --datestop with no process running; the rule stays until close removes it.
fn expiry(test: &str, variant: Variant, v4_file: &str, v6_file: &str) {
    let lab = Lab::iptables();
    let v4 = IptablesBackend::new(variant, Family::V4);
    let v6 = IptablesBackend::new(variant, Family::V6);
    lab.load(v4, v4_file);
    lab.load(v6, v6_file);
    let before = (lab.save(v4), lab.save(v6));
    let opened = Instant::now();
    let opened_at = std::time::SystemTime::now();
    for b in [v4, v6] {
        let mut b = b;
        let c = in_netns(&lab.srv, move || {
            b.open(&request(Some(Duration::from_secs(5))), &[], Mode::Apply)
        })
        .unwrap();
        assert!(
            c.script.contains(" -m time --datestop "),
            "{test}: {}",
            c.script
        );
    }
    assert!(
        lab.support_reaches_all(true),
        "{test}: the support host is shut out right after open"
    );
    // Bounded: 15 s at most, each failed attempt costs 2 s.
    let closed = wait_until(Duration::from_secs(15), || !lab.support_reaches_any(true));
    let took = opened.elapsed();
    assert!(closed, "{test}: still open {took:?} after a 5 s grant");
    // --datestop is truncated to the second: the grant lasts between 4 and 5 s (plus polling).
    assert!(
        took >= Duration::from_secs(4),
        "{test}: closed after {took:?}, before the 5 s were over"
    );
    // A connect that timed out on a loaded machine can make `closed` true a little early: judge
    // the rules' own expiry once the 5 s are certainly over.
    let over = opened_at + Duration::from_secs(6);
    while std::time::SystemTime::now() < over {
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = in_netns(&lab.srv, move || v4.state()).unwrap();
    assert!(
        !st.rules.is_empty() && st.open_addresses(std::time::SystemTime::now()).is_empty(),
        "{test}: {st:?}"
    );
    for b in [v4, v6] {
        let mut b = b;
        in_netns(&lab.srv, move || b.close(&[], Mode::Apply)).unwrap();
    }
    assert_eq!(
        (lab.save(v4), lab.save(v6)),
        before,
        "{test}: ruleset after close"
    );
}

#[test]
fn iptables_legacy_grant_expires_by_itself() {
    if !can_run("iptables_legacy_grant_expires_by_itself") {
        return;
    }
    expiry(
        "legacy --for 5s",
        Variant::Legacy,
        "legacy-input-drop.v4.rules",
        "legacy-input-drop.v6.rules",
    );
}

#[test]
fn iptables_nft_grant_expires_by_itself() {
    if !can_run("iptables_nft_grant_expires_by_itself") {
        return;
    }
    expiry(
        "iptables-nft --for 5s",
        Variant::Nft,
        "nft-input-drop.v4.rules",
        "nft-input-drop.v6.rules",
    );
}

#[test]
fn iptables_legacy_tables_are_read_in_the_threads_namespace() {
    if !can_run("iptables_legacy_tables_are_read_in_the_threads_namespace") {
        return;
    }
    let srv = Netns::new("oa-ipt-ns");
    let main_thread_view =
        std::fs::read_to_string("/proc/self/net/ip_tables_names").unwrap_or_default();
    // Nothing loaded yet: no legacy table in the namespace, and open creates none.
    let (tables, change) = in_netns(&srv, || {
        let mut b = IptablesBackend::new(Variant::Legacy, Family::V4);
        let change = b.open(&request(None), &[], Mode::Apply).unwrap();
        (legacy_tables(Family::V4), change)
    });
    assert!(tables.is_empty(), "{tables:?}");
    assert!(
        !change.changed && change.notes.iter().any(|n| n.contains("no filter table")),
        "{change:?}"
    );
    assert!(
        in_netns(&srv, || legacy_tables(Family::V4)).is_empty(),
        "open created a legacy table"
    );

    run(srv
        .cmd("iptables-legacy-restore")
        .arg(ruleset_path("legacy-input-drop.v4.rules")));
    let (thread_self, proc_self) = in_netns(&srv, || {
        (
            legacy_tables(Family::V4),
            std::fs::read_to_string("/proc/self/net/ip_tables_names").unwrap_or_default(),
        )
    });
    assert_eq!(thread_self, vec!["filter".to_string()]);
    // /proc/self/net follows the thread-group leader, i.e. the main thread's namespace.
    assert_eq!(proc_self, main_thread_view);
}

#[test]
fn iptables_nft_refuses_a_native_table_named_filter() {
    if !can_run("iptables_nft_refuses_a_native_table_named_filter") {
        return;
    }
    let lab = Lab::iptables();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "table ip filter {\n  chain input {\n    type filter hook input priority filter; policy drop;\n  }\n}\n").unwrap();
    lab.srv.load_nft(file.path());
    let (_, layers) = lab.detect(FirewallChoice::Auto);
    assert_eq!(
        layers.unwrap(),
        vec![LayerKind::Nft],
        "a native `table ip filter` is nftables' layer"
    );
    let before = lab.srv.ruleset();
    let err = in_netns(&lab.srv, || {
        IptablesBackend::new(Variant::Nft, Family::V4).open(&request(None), &[], Mode::Apply)
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("written with nft, not iptables-nft"),
        "{err:#}"
    );
    assert_eq!(lab.srv.ruleset(), before);
}

#[test]
fn iptables_detect_sees_ufw_from_its_chains() {
    if !can_run("iptables_detect_sees_ufw_from_its_chains") {
        return;
    }
    let lab = Lab::iptables();
    let (facts, _) = lab.detect(FirewallChoice::Auto);
    assert!(
        !facts.ufw_present && facts.legacy_v4_tables.is_empty() && facts.nft_tables.is_empty(),
        "{facts:?}"
    );
    lab.load(
        IptablesBackend::new(Variant::Legacy, Family::V4),
        "ufw.v4.rules",
    );
    let (facts, layers) = lab.detect(FirewallChoice::Auto);
    assert!(facts.ufw_present, "{facts:?}");
    assert_eq!(facts.legacy_v4_tables, vec!["filter".to_string()]);
    assert_eq!(layers.unwrap(), vec![LEGACY_V4]);
    assert!(detect::notes(&facts).iter().any(|n| n.contains("ufw")));
}

/// Benchmark rows for the iptables layers (beside the nft backend's): median time of open and of
/// close on a filter table of N rules, next to `*-save` alone and `*-restore --noflush` applying
/// the same script directly: open costs one save, its parsing and one restore. (Peak memory is
/// not measured: a child's ru_maxrss includes the test process's own high-water mark, which
/// Linux carries over exec.) Run it with
/// `cargo test --test netns -- --ignored iptables_bench --nocapture --test-threads 1`.
#[test]
#[ignore = "benchmark: run explicitly"]
fn iptables_bench() {
    if !can_run("iptables_bench") {
        return;
    }
    const RUNS: usize = 5;
    let sizes = [10usize, 1_000, 10_000, 100_000];
    println!("| layer | rules | open (median) | close (median) | `*-save` alone | `*-restore` of the same script |");
    println!("|---|---:|---:|---:|---:|---:|");
    for variant in [Variant::Legacy, Variant::Nft] {
        for &n in &sizes {
            let ns = Netns::new("oa-ipt-bench");
            let b = IptablesBackend::new(variant, Family::V4);
            let mut text = String::from(
                "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n",
            );
            for i in 0..n {
                // Distinct rules from documentation addresses: 203.0.113.x sources, varied ports.
                text.push_str(&format!(
                    "-A INPUT -s 203.0.113.{}/32 -p tcp -m tcp --dport {} -j DROP\n",
                    i % 256,
                    1024 + i / 256
                ));
            }
            text.push_str("COMMIT\n");
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &text).unwrap();
            run(ns.cmd(b.program("restore")).arg(file.path()));
            let (open, close, floor) = in_netns(&ns, move || {
                let mut b = b;
                let (mut open, mut close, mut floor) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..RUNS {
                    let t = Instant::now();
                    let c = b.open(&request(None), &[], Mode::Apply).unwrap();
                    open.push(t.elapsed());
                    let t = Instant::now();
                    b.close(&[], Mode::Apply).unwrap();
                    close.push(t.elapsed());
                    let t = Instant::now();
                    ovh_access::firewall::iptables::exec::restore(
                        &b.program("restore"),
                        Family::V4,
                        &c.script,
                    )
                    .unwrap();
                    floor.push(t.elapsed());
                    b.close(&[], Mode::Apply).unwrap();
                }
                (median(open), median(close), median(floor))
            });
            let save = in_netns(&ns, move || {
                median(
                    (0..RUNS)
                        .map(|_| {
                            let t = Instant::now();
                            run(&mut Command::new(b.program("save")));
                            t.elapsed()
                        })
                        .collect(),
                )
            });
            println!(
                "| {} | {n} | {open:.1?} | {close:.1?} | {save:.1?} | {floor:.1?} |",
                b.name()
            );
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
