//! The configuration's unit tests: defaults, refusals with their messages, files named relative to the config, redaction.

use super::*;

#[test]
fn defaults_validate_and_unknown_keys_are_refused() {
    Config::default().validate().unwrap();
    let err = toml::from_str::<Config>("[pipeline]\nshardz = 3\n").unwrap_err().to_string();
    assert!(err.contains("shardz"), "{err}");
    let c: Config = toml::from_str("[pipeline]\nclock = \"event\"\nshards = 3\n").unwrap();
    assert_eq!(c.pipeline.clock, ClockMode::Event);
    assert_eq!(c.pipeline.shards, 3);
}

#[test]
fn the_example_config_parses() {
    let c: Config = toml::from_str(include_str!("../../deploy/d06.example.toml")).unwrap();
    c.validate().unwrap();
}

fn problems_of(text: &str) -> Vec<String> {
    let c: Config = toml::from_str(text).unwrap();
    c.offline_problems(true).iter().map(|e| format!("{e:#}")).collect()
}

fn key_file(dir: &tempfile::TempDir, bytes: &[u8]) -> String {
    let path = dir.path().join("key");
    std::fs::write(&path, bytes).unwrap();
    format!("[pseudonym]\nkey_file = \"{}\"\n", path.display())
}

#[test]
fn load_failures_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Config::load(&dir.path().join("absent.toml")).unwrap_err();
    assert_eq!(exit::code_of(&missing), exit::CONFIG, "{missing:#}");
    for (text, expected) in [
        ("[pipeline]\nshardz = 3\n", "shardz"),
        ("[pipeline]\nshards = 0\n", "pipeline.shards"),
        ("[clickhouse]\nurl = \"tcp://ch:9000\"\n", "must be an http:// or https:// URL"),
        ("[clickhouse]\nurls = [\"tcp://ch2:9000\"]\n", "must be an http:// or https:// URL"),
        ("[clickhouse]\ncluster = \"d06-prod; DROP\"\n", "cluster \"d06-prod; DROP\" must be letters"),
        ("not toml at all", "parsing"),
    ] {
        let path = dir.path().join("d06.toml");
        std::fs::write(&path, text).unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(exit::code_of(&e), exit::CONFIG, "{e:#}");
        assert!(format!("{e:#}").contains(expected), "{expected}: {e:#}");
    }
}

#[test]
fn every_offline_problem_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[clickhouse]\nurl = \"https://ch.example:8443\"\nca_file = \"{0}/no-ca.pem\"\n\
         [alerts]\nalertmanager_url = [\"https://am1.example\", \"https://am2.example\"]\nca_file = \"{0}/no-am-ca.pem\"\n\
         [pipeline]\nshards = 0\n[plan]\nfile = \"{0}/no-plan.toml\"\n[hotline]\ncalendar_files = [\"{0}/no-cal.toml\"]\n\
         [pseudonym]\nkey_env = \"D06_TEST_NEVER_SET_8f3a\"\n",
        dir.path().display()
    );
    let problems = problems_of(&text);
    let expect = [
        "clickhouse: ca_file: cannot read",
        "pipeline.shards",
        "hotline.calendar_files",
        "alerts: ca_file: cannot read",
        "no pseudonymisation key: set the environment variable D06_TEST_NEVER_SET_8f3a",
        "no-plan.toml",
    ];
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    for (p, e) in problems.iter().zip(expect) {
        assert!(p.contains(e), "{e:?} in {p:?}");
        assert!(!p.contains('\n'), "one line: {p:?}");
    }
}

#[test]
fn the_key_must_be_16_bytes_and_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let short = problems_of(&key_file(&dir, b"short-secret\n"));
    assert_eq!(short.len(), 1, "{short:?}");
    assert!(short[0].contains("at least 16 bytes") && !short[0].contains("short-secret"), "{short:?}");
    let c: Config = toml::from_str(&key_file(&dir, b"short-secret\n")).unwrap();
    assert_eq!(exit::code_of(&c.key().map(drop).unwrap_err()), exit::CONFIG);
    assert_eq!(problems_of(&key_file(&dir, b"a-key-of-twenty-four-by\n")), Vec::<String>::new());
    let c: Config = toml::from_str(&key_file(&dir, b"a-key-of-twenty-four-by")).unwrap();
    assert!(c.offline_problems(false).is_empty() && c.offline_problems(true).is_empty());
    let none: Config = toml::from_str("[pseudonym]\nkey_env = \"D06_TEST_NEVER_SET_8f3a\"\n").unwrap();
    assert!(none.offline_problems(false).is_empty(), "--without-key skips only the key");
}

#[test]
fn an_invalid_plan_file_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, "name = 3\n").unwrap();
    let c: Config = toml::from_str(&format!("[plan]\nfile = \"{}\"\n", plan.display())).unwrap();
    let geo = Geography::load(c.contract.geography).unwrap();
    let e = c.plans(&geo).unwrap_err();
    assert_eq!(exit::code_of(&e), exit::CONFIG, "{e:#}");
    assert!(Config::default().plans(&geo).is_ok(), "the embedded plan");
}

#[test]
fn a_plan_loads_the_baseline_file_it_names_relative_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plans")).unwrap();
    let plan = dir.path().join("plans/plan.toml");
    std::fs::write(&plan, format!("baseline_file = \"b.csv\"\n{}", crate::DEFAULT_PLAN)).unwrap();
    let c: Config = toml::from_str(&format!("[plan]\nfile = \"{}\"\n", plan.display())).unwrap();
    let geo = Geography::load(c.contract.geography).unwrap();
    // Missing: a configuration error naming the file.
    let e = c.plans(&geo).unwrap_err();
    assert_eq!(exit::code_of(&e), exit::CONFIG, "{e:#}");
    let b = dir.path().join("plans/b.csv");
    assert!(format!("{e:#}").contains(&format!("reading the baseline file {}", b.display())), "{e:#}");
    // A bad row: refused with the file and its line.
    std::fs::write(&b, "indicator,area,baseline,source\nsmartphone_4g,688,5,x\nsmartphone_4g,7,5,x\n").unwrap();
    let e = c.plans(&geo).unwrap_err();
    assert_eq!(exit::code_of(&e), exit::CONFIG, "{e:#}");
    assert!(format!("{e:#}").contains("baseline file b.csv: line 3: unknown area code \"7\""), "{e:#}");
    // A good file: its baselines are the plan's.
    std::fs::write(&b, "indicator,area,baseline,source\nsmartphone_4g,688,19800,Viettel\n").unwrap();
    let plans = c.plans(&geo).unwrap();
    let p = &plans.first().plan;
    let d = geo.find(aggregator::AreaLevel::District, "688").unwrap();
    assert_eq!(p.baseline_of(aggregator::Indicator::Smartphone4g, d), aggregator::Baseline::Known(19_800));
    assert!(c.offline_problems(false).is_empty());
}

#[test]
fn several_provinces_each_need_their_plan_and_name_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    // Post-2025 units have no district split: a plan needs only the province's targets.
    let plan = |name: &str, target: u64| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("start = 2026-01-01\nend = 2026-12-31\n[indicators.cccd]\ntarget = {target}\n"))
            .unwrap();
        path.display().to_string()
    };
    let (a, b) = (plan("a.toml", 700), plan("b.toml", 900));
    let base = "[pseudonym]\nkey_env = \"D06_TEST_NEVER_SET_8f3a\"\n[contract]\ngeography = \"post2025\"\n";
    let config = |rest: &str| -> Config { toml::from_str(&format!("{base}{rest}")).unwrap() };
    let problems =
        |rest: &str| -> Vec<String> { config(rest).offline_problems(false).iter().map(|e| format!("{e:#}")).collect() };
    let two = "provinces = [\"75\", \"79\"]\n";
    let good = format!("{two}[plan.by_province]\n\"75\" = \"{a}\"\n\"79\" = \"{b}\"\n");
    assert_eq!(problems(&good), Vec::<String>::new());
    let c = config(&good);
    let geo = c.geography().unwrap();
    let plans = c.plans(&geo).unwrap();
    let hcm = geo.province_by_code("79").unwrap();
    assert_eq!(plans.of(hcm).target(aggregator::Indicator::Cccd, hcm), 900);
    assert_eq!(c.geography_identity(), "Post2025 provinces 75,79");
    assert_eq!(Config::default().geography_identity(), "Pre2025", "Bình Phước's stores stay valid");

    let missing = problems(&format!("{two}[plan.by_province]\n\"75\" = \"{a}\"\n"));
    assert!(missing.len() == 1 && missing[0].contains("province 79 has no plan"), "{missing:?}");
    let stray = problems(&format!("provinces = [\"75\"]\n[plan.by_province]\n\"75\" = \"{a}\"\n\"79\" = \"{b}\"\n"));
    assert!(stray.len() == 1 && stray[0].contains("names province 79"), "{stray:?}");
    let file =
        problems(&format!("{two}[plan]\nfile = \"{a}\"\n[plan.by_province]\n\"75\" = \"{a}\"\n\"79\" = \"{b}\"\n"));
    assert!(file.len() == 1 && file[0].contains("plan.file is the plan of one province"), "{file:?}");
    let unknown = problems("provinces = [\"99\"]\n");
    assert!(unknown.len() == 1 && unknown[0].contains("no Post2025 province has code \"99\""), "{unknown:?}");
    let twice = problems("provinces = [\"75\", \"75\"]\n");
    assert!(twice.len() == 1 && twice[0].contains("in two provinces"), "{twice:?}");
    // One province: plan.file (or the embedded plan) is its plan.
    let one = config(&format!("provinces = [\"79\"]\n[plan]\nfile = \"{b}\"\n"));
    let geo = one.geography().unwrap();
    assert_eq!(one.plans(&geo).unwrap().first().code(), "79");
    assert!(one.offline_problems(false).is_empty());
}

#[test]
fn printed_toml_is_redacted_complete_and_loads_again() {
    let c: Config = toml::from_str(
        "[kafka.properties]\n\"sasl.password\" = \"hunter2-secret\"\n\"sasl.username\" = \"d06\"\n\
         [kafka.properties_from_env]\n\"ssl.key.password\" = \"D06_SSL_KEY_PASSWORD\"\n\
         [clickhouse]\nurl = \"http://admin:url-secret@ch:8123\"\npassword = \"ch-secret-pw\"\n\
         [alerts]\nalertmanager_url = \"http://am:am-secret@am:9093\"\nsend_at = \"07:30\"\n\
         [pseudonym]\nkey_file = \"/run/secrets/d06_hmac_key\"\n",
    )
    .unwrap();
    let text = c.to_redacted_toml().unwrap();
    for secret in ["hunter2-secret", "url-secret", "ch-secret-pw", "am-secret"] {
        assert!(!text.contains(secret), "{secret} in\n{text}");
    }
    for shown in [
        "\"sasl.password\" = \"[redacted]\"",
        "password = \"[redacted]\"",
        "\"sasl.username\" = \"d06\"",
        "D06_SSL_KEY_PASSWORD",
        "key_file = \"/run/secrets/d06_hmac_key\"",
        "send_at = \"07:30\"",
        "[pipeline.lag_rule]",
        "geography = \"pre2025\"",
        "clock = \"wall\"",
    ] {
        assert!(text.contains(shown), "{shown} in\n{text}");
    }
    let again: Config = toml::from_str(&text).unwrap();
    assert_eq!(again.to_redacted_toml().unwrap(), text);
    assert!(Config::default().to_redacted_toml().unwrap().contains("[kafka.topics]"));
}

#[test]
fn secrets_are_not_in_debug_output() {
    let c: Config = toml::from_str(
        "[kafka.properties]\n\"sasl.password\" = \"hunter2-secret\"\n[clickhouse]\npassword = \"ch-secret-pw\"\n",
    )
    .unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(!shown.contains("ch-secret-pw"), "{shown}");
}
