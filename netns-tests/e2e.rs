//! The foundation scenario: grant → ssh login from the support host → revoke.
use crate::common::*;

#[test]
fn namespaces_are_unique_and_cleaned_up() {
    if !can_run("namespaces_are_unique_and_cleaned_up") {
        return;
    }
    let (na, nb);
    {
        let a = Netns::new("oa-t");
        let b = Netns::new("oa-t");
        assert_ne!(a.name, b.name);
        a.link("va", &b, "vb", &["192.0.2.1/24"], &["192.0.2.2/24"]);
        // A process left running must not keep the namespace alive.
        let _ = a.cmd("sleep").arg("30").spawn().unwrap();
        na = a.name.clone();
        nb = b.name.clone();
    }
    let list = run(std::process::Command::new("ip").args(["netns", "list"]));
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains(&na) && !list.contains(&nb), "left behind: {list}");
}
