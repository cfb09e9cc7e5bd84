//! The change as data in `--json` (what Ansible's `--diff` shows): the keys file's content before
//! and after, and the firewall change as the text each layer takes, for grant and revoke, in a
//! dry run (nothing changed) and for real.
use serde_json::Value;

use crate::common::*;
use crate::topology::*;

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string: {v}"))
}

#[test]
fn json_carries_the_change_keys_before_after_and_firewall_script() {
    if !can_run("json_carries_the_change_keys_before_after_and_firewall_script") {
        return;
    }
    let t = Topology::new(Opts::default());
    let admin = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmlq1b2qrtKD0Lg6E8Zz3nM0qH0Kb1yXbYl8o6UXLhd admin@laptop\n";
    t.write_keys(admin);
    let ruleset = t.srv.ruleset();
    let blob = t.support_blob();

    let v = json_of(&t.tool(t.grant_args(&["--json", "--dry-run"])));
    assert_eq!(v["changed"], Value::Bool(false), "{v}");
    assert_eq!(v["would_change"], Value::Bool(true), "{v}");
    assert_eq!(text(&v, "keys_file_before"), admin, "{v}");
    let after = text(&v, "keys_file_after");
    assert!(
        after.starts_with(admin) && after[admin.len()..].contains(&blob),
        "{after}"
    );
    let script = text(&v, "firewall_script");
    assert!(
        script.starts_with("# nftables\n")
            && script.contains(&format!(
                "add element inet filter ovh_access_v4 {{ {SUP_V4} }}"
            )),
        "{script}"
    );
    assert_eq!(t.keys_text(), admin, "a dry run wrote the keys file");
    assert_eq!(t.srv.ruleset(), ruleset, "a dry run changed the ruleset");

    // For real: the same texts, and the file now is what `keys_file_after` said.
    let args = t.grant_args(&["--json"]);
    let v = json_of(&t.tool_ok(&args));
    assert_eq!(v["changed"], Value::Bool(true), "{v}");
    assert_eq!(text(&v, "keys_file_after"), t.keys_text());
    assert!(text(&v, "firewall_script").contains("ovh_access"), "{v}");
    // A repeated grant changes nothing: no firewall text, the file the same before and after.
    let v = json_of(&t.tool_ok(&args));
    assert_eq!(v["changed"], Value::Bool(false), "{v}");
    assert_eq!(text(&v, "firewall_script"), "", "{v}");
    assert_eq!(text(&v, "keys_file_before"), text(&v, "keys_file_after"));
    let v = json_of(&t.tool(t.grant_args(&["--json", "--dry-run"])));
    assert_eq!(v["would_change"], Value::Bool(false), "{v}");

    let granted = t.keys_text();
    let granted_rules = t.srv.ruleset();
    let v = json_of(&t.tool_ok(["--json", "revoke", "--dry-run"]));
    assert_eq!(v["would_change"], Value::Bool(true), "{v}");
    assert_eq!(text(&v, "keys_file_before"), granted, "{v}");
    let after = text(&v, "keys_file_after");
    assert!(
        after.starts_with(admin)
            && after
                .lines()
                .any(|l| l.starts_with('#') && l.contains(&blob)),
        "the support line commented out:\n{after}"
    );
    assert!(
        text(&v, "firewall_script").contains("delete chain inet filter ovh_access"),
        "{v}"
    );
    assert_eq!(
        t.keys_text(),
        granted,
        "revoke --dry-run wrote the keys file"
    );
    assert_eq!(
        t.srv.ruleset(),
        granted_rules,
        "revoke --dry-run changed the ruleset"
    );

    let v = json_of(&t.tool_ok(["--json", "revoke"]));
    assert_eq!(text(&v, "keys_file_after"), t.keys_text(), "{v}");
    assert_eq!(t.srv.ruleset(), ruleset, "revoke restores the ruleset");
    let v = json_of(&t.tool_ok(["--json", "revoke", "--dry-run"]));
    assert_eq!(v["would_change"], Value::Bool(false), "{v}");
    // status: the expiry at the top level (none here), beside `consistent`.
    let v = json_of(&t.tool_ok(["--json", "status"]));
    assert_eq!(v["expires_at"], Value::Null, "{v}");
    assert_eq!(v["consistent"], Value::Bool(true), "{v}");
}
