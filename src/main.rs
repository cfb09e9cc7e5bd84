fn main() {
    std::process::exit(ovh_access::cli_main());
}
