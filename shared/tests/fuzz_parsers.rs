//! Every parser of user input gets arbitrary strings (proptest) and the
//! committed regression seeds (fuzz-seeds.txt): it may refuse them, it must
//! never panic, and what it accepts must be in range.

use proptest::prelude::*;
use shared::{args, cli, flowrules};

/// Call every parser of user input on `s`; each result is checked for range.
fn all_parsers(s: &str) {
    if let Ok(p) = cli::parse_port(s) {
        assert!(p >= 1);
    }
    let _ = cli::parse_ip(s);
    let _ = cli::parse_ipv4(s);
    if let Ok(d) = cli::parse_duration(s) {
        assert!(!d.is_zero());
    }
    if let Ok(i) = cli::parse_interval(s) {
        assert!(i > 0);
    }
    if let Ok(n) = cli::parse_ifname(s) {
        assert!(!n.is_empty() && n.len() <= 15);
    }
    let _ = cli::parse_ethertype(s);
    if let Ok(v) = cli::parse_vlan_id(s) {
        assert!((1..=4094).contains(&v));
    }
    let _ = args::parse_cpu_list(s);
    let _ = args::parse_pid_list(s);
    let _ = args::parse_pid(s);
    let _ = args::parse_seconds_in(s, 0.0, 3600.0);
    let _ = args::parse_whole_seconds(s);
    if let Ok(rules) = flowrules::parse_rules(s, 64) {
        assert!(rules.len() <= 64);
    }
    let _ = flowrules::parse_protocol_word(s);
    let _ = flowrules::parse_bool_word(s);
    let _ = flowrules::parse_port_or_any(s);
    let _ = flowrules::parse_ip_proto(s);
}

#[test]
fn regression_seeds() {
    let seeds = include_str!("fuzz-seeds.txt");
    for line in seeds.lines() {
        all_parsers(line);
        // Multi-line inputs (filter files): the seed with \n escapes expanded.
        all_parsers(&line.replace("\\n", "\n"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,40}") {
        all_parsers(&s);
    }

    #[test]
    fn number_like_strings_never_panic(s in "[-+0-9.eExX,a-fA-F: ]{0,24}") {
        all_parsers(&s);
    }

    #[test]
    fn ports_in_range_round_trip(p in 1u32..=65535) {
        prop_assert_eq!(cli::parse_port(&p.to_string()), Ok(p as u16));
    }

    #[test]
    fn ports_out_of_range_are_refused(p in 65536u64..u64::MAX) {
        prop_assert!(cli::parse_port(&p.to_string()).is_err());
    }

    #[test]
    fn ipv4_round_trip(a in any::<[u8; 4]>()) {
        let s = format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
        prop_assert_eq!(cli::parse_ipv4(&s).map(|ip| ip.octets()), Ok(a));
    }

    #[test]
    fn rule_files_of_random_lines_never_panic(lines in proptest::collection::vec("[a-z0-9_=.:/ ,#-]{0,30}", 0..8)) {
        all_parsers(&lines.join("\n"));
    }
}
