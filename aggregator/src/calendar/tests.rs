//! The working-time calendar's unit tests: holidays, make-up days, working minutes and deadlines.

#![allow(clippy::unwrap_used)]

use super::*;

/// Local time in Vietnam (UTC+7) as unix nanos.
fn vn(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Nanos {
    let local = NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, s).unwrap();
    (local - Duration::hours(7)).and_utc().timestamp_nanos_opt().unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn cal() -> WorkCalendar {
    WorkCalendar::embedded().unwrap()
}

#[test]
fn embedded_calendar_has_the_2024_swap() {
    let c = cal();
    assert_eq!(c.time_zone(), chrono_tz::Asia::Ho_Chi_Minh);
    // 30/4–1/5/2024: off Saturday 27/4 to Wednesday 1/5, Monday 29/4 swapped, Saturday 4/5 worked.
    for d in [27, 28, 29, 30] {
        assert!(!c.is_working_day(date(2024, 4, d)), "{d}/4/2024");
    }
    assert!(!c.is_working_day(date(2024, 5, 1)));
    assert!(c.is_working_day(date(2024, 5, 2)));
    assert!(c.is_working_day(date(2024, 5, 3)));
    assert!(c.is_working_day(date(2024, 5, 4)), "make-up Saturday");
    assert!(!c.is_working_day(date(2024, 5, 5)));
    assert!(c.holidays()[&date(2024, 4, 29)].source.contains("2450/VPCP-KGVX"));
    assert!(c.working_days()[&date(2024, 5, 4)].source.contains("2450/VPCP-KGVX"));
    // Other years.
    assert!(!c.is_working_day(date(2023, 1, 2)), "Tết Dương lịch 2023, compensatory Monday");
    assert!(!c.is_working_day(date(2023, 5, 3)));
    assert!(c.is_working_day(date(2023, 5, 4)));
    assert!(!c.is_working_day(date(2024, 2, 14)));
    assert!(c.is_working_day(date(2024, 2, 15)));
    assert!(c.is_working_day(date(2025, 4, 26)), "make-up Saturday 2025");
    assert!(!c.is_working_day(date(2025, 5, 2)));
    assert!(!c.is_working_day(date(2025, 9, 1)));
    assert!(c.is_working_day(date(2025, 9, 3)));
    // Outside the shipped years: plain weekdays (1/1/2027, a Friday, is
    // not entered: vn-2027.toml does not exist yet).
    assert!(c.is_working_day(date(2027, 1, 1)));
    assert!(!c.is_working_day(date(2027, 1, 2)));
    // 11 + 12 + 12 + 13 weekday holidays, 1 + 1 + 2 make-up Saturdays.
    assert_eq!(c.holidays().len(), 48);
    assert_eq!(c.working_days().len(), 4);
    assert!(c.holidays().values().chain(c.working_days().values()).all(|e| !e.source.is_empty()));
}

#[test]
fn every_shipped_holiday_is_a_weekday_and_every_make_up_day_a_weekend_day() {
    let c = cal();
    for d in c.holidays().keys() {
        assert!(d.weekday().num_days_from_monday() < 5, "{d}");
    }
    for d in c.working_days().keys() {
        assert!(d.weekday().num_days_from_monday() >= 5, "{d}");
    }
}

#[test]
fn deadline_across_a_weekend() {
    // Fri 10/5/2024 15:00: Fri 15:00–16:30 = 1.5 h; Sat, Sun off;
    // Mon 13/5 07:00–11:30 = 4.5 h (6 h), 13:00 + 2 h = 15:00 → 8 h.
    assert_eq!(cal().deadline(vn(2024, 5, 10, 15, 0, 0), 8), vn(2024, 5, 13, 15, 0, 0));
}

#[test]
fn deadline_across_a_holiday() {
    // Wed 17/4/2024 14:00: 14:00–16:30 = 2.5 h; Thu 18/4 Giỗ Tổ off;
    // Fri 19/4 07:00–11:30 = 4.5 h (7 h), 13:00 + 1 h = 14:00 → 8 h.
    assert_eq!(cal().deadline(vn(2024, 4, 17, 14, 0, 0), 8), vn(2024, 4, 19, 14, 0, 0));
}

#[test]
fn deadline_across_the_swapped_monday_29_4_2024() {
    // Fri 26/4/2024 10:00: 10:00–11:30 = 1.5 h, 13:00–16:30 = 3.5 h (5 h);
    // Sat 27, Sun 28, Mon 29 (swapped), Tue 30/4, Wed 1/5 off;
    // Thu 2/5 07:00 + 3 h = 10:00 → 8 h.
    assert_eq!(cal().deadline(vn(2024, 4, 26, 10, 0, 0), 8), vn(2024, 5, 2, 10, 0, 0));
}

#[test]
fn deadline_on_the_make_up_saturday_4_5_2024() {
    // Fri 3/5/2024 13:00: 13:00–16:30 = 3.5 h; Sat 4/5 is worked:
    // 07:00–11:30 = 4.5 h → 8 h exactly at the end of the shift, 11:30.
    assert_eq!(cal().deadline(vn(2024, 5, 3, 13, 0, 0), 8), vn(2024, 5, 4, 11, 30, 0));
    // Received on the make-up Saturday itself at 09:00: 2.5 h + 3.5 h = 6 h;
    // Sun off; Mon 6/5 07:00 + 2 h = 09:00.
    assert_eq!(cal().deadline(vn(2024, 5, 4, 9, 0, 0), 8), vn(2024, 5, 6, 9, 0, 0));
}

#[test]
fn deadline_starting_inside_the_lunch_break() {
    // Tue 7/5/2024 12:00: working time starts at 13:00; 13:00–16:30 = 3.5 h;
    // Wed 8/5 07:00–11:30 = 4.5 h → 8 h at 11:30.
    assert_eq!(cal().deadline(vn(2024, 5, 7, 12, 0, 0), 8), vn(2024, 5, 8, 11, 30, 0));
    // 11:30 itself is already the break (shifts end exclusive): same deadline.
    assert_eq!(cal().deadline(vn(2024, 5, 7, 11, 30, 0), 8), vn(2024, 5, 8, 11, 30, 0));
}

#[test]
fn deadline_at_07_00_at_16_30_and_after_hours() {
    let c = cal();
    // Mon 13/5/2024 07:00: 4.5 h + 3.5 h = 8 h → 16:30 the same day.
    assert_eq!(c.deadline(vn(2024, 5, 13, 7, 0, 0), 8), vn(2024, 5, 13, 16, 30, 0));
    // 16:30 is after the shift: starts Tue 14/5 07:00 → Tue 16:30.
    assert_eq!(c.deadline(vn(2024, 5, 13, 16, 30, 0), 8), vn(2024, 5, 14, 16, 30, 0));
    // One second before 16:30: 1 s on Monday, then 7 h 59 min 59 s from Tue 07:00:
    // 4.5 h to 11:30, 3 h 29 min 59 s from 13:00 → 16:29:59.
    assert_eq!(c.deadline(vn(2024, 5, 13, 16, 29, 59), 8), vn(2024, 5, 14, 16, 29, 59));
    // 20:15 and 06:00: both start at Tue 14/5 07:00 → Tue 16:30.
    assert_eq!(c.deadline(vn(2024, 5, 13, 20, 15, 0), 8), vn(2024, 5, 14, 16, 30, 0));
    assert_eq!(c.deadline(vn(2024, 5, 14, 6, 0, 0), 8), vn(2024, 5, 14, 16, 30, 0));
}

#[test]
fn deadline_keeps_seconds() {
    // Mon 13/5/2024 08:15:30: 3 h 14 min 30 s to 11:30, 3.5 h to 16:30 (6 h 44 min 30 s);
    // Tue 07:00 + 1 h 15 min 30 s = 08:15:30.
    assert_eq!(cal().deadline(vn(2024, 5, 13, 8, 15, 30), 8), vn(2024, 5, 14, 8, 15, 30));
}

#[test]
fn deadline_of_48_hours() {
    let c = cal();
    // Wed 24/4/2024 09:00: Wed 2.5 + 3.5 = 6 h; Thu 25 → 14; Fri 26 → 22;
    // 27/4–1/5 off; Thu 2/5 → 30; Fri 3/5 → 38; Sat 4/5 (make-up) → 46;
    // Sun off; Mon 6/5 07:00 + 2 h = 09:00 → 48.
    assert_eq!(c.deadline(vn(2024, 4, 24, 9, 0, 0), 48), vn(2024, 5, 6, 9, 0, 0));
    // Wed 7/2/2024 10:00: 1.5 + 3.5 = 5 h; Tết 8–14/2 off; Thu 15 → 13; Fri 16 → 21;
    // Mon 19 → 29; Tue 20 → 37; Wed 21 → 45; Thu 22/2 07:00 + 3 h = 10:00 → 48.
    assert_eq!(c.deadline(vn(2024, 2, 7, 10, 0, 0), 48), vn(2024, 2, 22, 10, 0, 0));
    // Mon 13/5/2024 07:00: six full days Mon–Fri + Mon → Mon 20/5 16:30.
    assert_eq!(c.deadline(vn(2024, 5, 13, 7, 0, 0), 48), vn(2024, 5, 20, 16, 30, 0));
}

#[test]
fn zero_hours_is_the_next_working_instant() {
    let c = cal();
    // Sat 11/5/2024 10:00 → Mon 13/5 07:00.
    assert_eq!(c.deadline(vn(2024, 5, 11, 10, 0, 0), 0), vn(2024, 5, 13, 7, 0, 0));
    // Inside a shift: the start itself.
    assert_eq!(c.deadline(vn(2024, 5, 13, 9, 0, 0), 0), vn(2024, 5, 13, 9, 0, 0));
    // Partial hours through add_working_time: Mon 13/5 11:00 + 45 min → 11:30 is 30 min, 13:15.
    assert_eq!(c.add_working_time(vn(2024, 5, 13, 11, 0, 0), 45 * 60 * 1_000_000_000), vn(2024, 5, 13, 13, 15, 0));
}

#[test]
fn custom_calendar_in_another_zone() {
    let c = WorkCalendar::from_toml(
        r#"
        time_zone = "UTC"
        working_weekdays = ["sat", "sun"]
        shifts = [{ start = "08:00", end = "12:00" }]
        [[holidays]]
        date = 2024-05-05
        source = "test"
        "#,
    )
    .unwrap();
    let utc = |d, h| {
        NaiveDate::from_ymd_opt(2024, 5, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_nanos_opt()
            .unwrap()
    };
    // Fri 3/5 10:00 UTC → Sat 4/5 08:00–12:00 = 4 h; Sun 5/5 holiday; Sat 11/5 08:00 + 2 h.
    assert_eq!(c.deadline(utc(3, 10), 6), utc(11, 10));
    assert!(!c.is_working_day(date(2024, 5, 6)));
    assert_eq!(c.shifts().len(), 1);
    assert_eq!(c.time_zone(), chrono_tz::UTC);
}

#[test]
fn loading_rejects_bad_files() {
    let err = |s: &str| WorkCalendar::from_toml(s).unwrap_err();
    assert!(matches!(err("colour = 1"), CalendarError::Toml { .. }));
    assert!(matches!(err("[[holidays]]\ndate = 2024-01-01\nsource = \"x\"\nnote = \"y\""), CalendarError::Toml { .. }));
    assert!(matches!(err("[[holidays]]\ndate = 2024-01-01"), CalendarError::Toml { .. }), "source is required");
    assert!(matches!(err("[[holidays]]\ndate = 2024-01-01\nsource = \" \""), CalendarError::NoSource(_)));
    assert!(matches!(err("[[holidays]]\ndate = 2024-01-01T08:00:00\nsource = \"x\""), CalendarError::Date(_)));
    assert!(matches!(err("time_zone = \"Asia/Saigon City\""), CalendarError::TimeZone(_)));
    assert!(matches!(err("shifts = [{ start = \"7h\", end = \"11:30\" }]"), CalendarError::Time(_)));
    assert!(matches!(
        err("shifts = [{ start = \"07:00\", end = \"11:30\" }, { start = \"11:00\", end = \"12:00\" }]"),
        CalendarError::Shift { .. }
    ));
    assert!(matches!(err("shifts = []"), CalendarError::NoWorkingTime));
    assert!(matches!(err("working_weekdays = []"), CalendarError::NoWorkingTime));
    assert!(matches!(err("working_weekdays = [\"monday\"]"), CalendarError::Weekday(_)));
    let twice = "[[holidays]]\ndate = 2024-01-01\nsource = \"x\"\n";
    assert!(matches!(err(&format!("{twice}{twice}")), CalendarError::Duplicate(_)));
    let both = "[[holidays]]\ndate = 2024-01-06\nsource = \"x\"\n[[working_days]]\ndate = 2024-01-06\nsource = \"x\"";
    assert!(matches!(err(both), CalendarError::Conflict(_)));
}

#[test]
fn merging_checks_settings_and_dates() {
    let mut c = cal();
    let before = c.clone();
    // 2024-05-04 is already a make-up day: listing it as a holiday conflicts.
    let clash = WorkCalendar::from_toml("[[holidays]]\ndate = 2024-05-04\nsource = \"x\"").unwrap();
    assert!(matches!(c.merge(clash), Err(CalendarError::Conflict(_))));
    let again = WorkCalendar::from_toml("[[holidays]]\ndate = 2024-04-29\nsource = \"x\"").unwrap();
    assert!(matches!(c.merge(again), Err(CalendarError::Duplicate(_))));
    assert_eq!(c, before, "a failed merge changes nothing");
    // A file that sets the time zone merges with files that leave it out ...
    let zone = WorkCalendar::from_toml("time_zone = \"Asia/Ho_Chi_Minh\"").unwrap();
    c.merge(zone).unwrap();
    // ... but not with one that sets another.
    let other = WorkCalendar::from_toml("time_zone = \"Asia/Bangkok\"").unwrap();
    assert!(matches!(c.merge(other), Err(CalendarError::Mismatch("time_zone"))));
    let year = WorkCalendar::from_toml(
        "[[holidays]]\ndate = 2027-01-01\nname = \"Tết Dương lịch\"\nsource = \"BLLĐ 2019 Điều 112\"",
    )
    .unwrap();
    c.merge(year).unwrap();
    assert!(!c.is_working_day(date(2027, 1, 1)));
}

#[test]
fn the_shipped_years_have_holidays_and_others_do_not() {
    let cal = WorkCalendar::embedded().unwrap();
    for year in 2023..=2026 {
        assert!(cal.has_holidays_in(year), "{year}");
    }
    assert!(!cal.has_holidays_in(2022));
    // 2027's schedule is not published yet: d06 warns about it from 2026 on.
    assert!(!cal.has_holidays_in(2027));
}

#[test]
fn embedded_calendar_has_2026() {
    let c = cal();
    // Tết Bính Ngọ: off Saturday 14/2 to Sunday 22/2/2026 (Thông báo 9441/TB-BNV).
    assert!(c.is_working_day(date(2026, 2, 13)), "Friday before Tết");
    for d in 14..=22 {
        assert!(!c.is_working_day(date(2026, 2, d)), "{d}/2/2026");
    }
    assert!(c.is_working_day(date(2026, 2, 23)), "Monday after Tết");
    for d in 16..=20 {
        assert!(c.holidays()[&date(2026, 2, d)].source.contains("9441/TB-BNV"), "{d}/2/2026");
    }
    // Tết Dương lịch: Thursday 1/1 and Friday 2/1 off, Saturday 10/1 worked.
    assert!(!c.is_working_day(date(2026, 1, 1)));
    assert!(!c.is_working_day(date(2026, 1, 2)));
    assert!(c.is_working_day(date(2026, 1, 5)));
    assert!(c.is_working_day(date(2026, 1, 10)), "make-up Saturday");
    assert!(c.working_days()[&date(2026, 1, 10)].source.contains("12729/VPCP-KGVX"));
    // Giỗ Tổ on Sunday 26/4, compensated Monday 27/4; 30/4 and 1/5 are Thursday and Friday.
    assert!(!c.is_working_day(date(2026, 4, 27)));
    assert!(c.is_working_day(date(2026, 4, 28)));
    assert!(!c.is_working_day(date(2026, 4, 30)));
    assert!(!c.is_working_day(date(2026, 5, 1)));
    // Quốc khánh: off Saturday 29/8 to Wednesday 2/9, Monday 31/8 swapped for Saturday 22/8.
    assert!(c.is_working_day(date(2026, 8, 22)), "make-up Saturday");
    for d in [29, 30, 31] {
        assert!(!c.is_working_day(date(2026, 8, d)), "{d}/8/2026");
    }
    assert!(!c.is_working_day(date(2026, 9, 1)));
    assert!(!c.is_working_day(date(2026, 9, 2)));
    assert!(c.is_working_day(date(2026, 9, 3)));
    // Ngày Văn hóa Việt Nam (Tuesday 24/11/2026) is not a day off in law yet (vn-2026.toml).
    assert!(c.is_working_day(date(2026, 11, 24)));
    let year = |y| c.holidays().keys().filter(|d| d.year() == y).count();
    assert_eq!(year(2026), 13);
}

#[test]
fn deadline_across_tet_2026() {
    let c = cal();
    // 8 h. Fri 13/2/2026 14:00: 14:00–16:30 = 2.5 h; Sat 14 to Sun 22/2 off (Tết);
    // Mon 23/2 07:00–11:30 = 4.5 h (7 h), 13:00 + 1 h = 14:00 → 8 h.
    assert_eq!(c.deadline(vn(2026, 2, 13, 14, 0, 0), 8), vn(2026, 2, 23, 14, 0, 0));
    // Received during Tết (mùng 1, Tue 17/2 10:00): nothing counts until Mon 23/2 07:00;
    // 4.5 h + 3.5 h = 8 h → Mon 23/2 16:30.
    assert_eq!(c.deadline(vn(2026, 2, 17, 10, 0, 0), 8), vn(2026, 2, 23, 16, 30, 0));
    // 48 h. Thu 12/2/2026 09:00: 09:00–11:30 = 2.5 h, 13:00–16:30 = 3.5 h (6 h);
    // Fri 13 → 14 h; 14–22/2 off; Mon 23 → 22; Tue 24 → 30; Wed 25 → 38; Thu 26 → 46;
    // Fri 27/2 07:00 + 2 h = 09:00 → 48 h.
    assert_eq!(c.deadline(vn(2026, 2, 12, 9, 0, 0), 48), vn(2026, 2, 27, 9, 0, 0));
    // Without the 2026 file the same ticket would be due on Fri 20/2, in the middle of Tết:
    // 6 h on Thu 12, then 8 h a day Fri 13, Mon 16 … Thu 19 (46 h), Fri 20/2 09:00.
    assert_eq!(WorkCalendar::default().deadline(vn(2026, 2, 12, 9, 0, 0), 48), vn(2026, 2, 20, 9, 0, 0));
}

#[test]
fn deadline_across_new_year_2026_and_its_make_up_saturday() {
    let c = cal();
    // Wed 31/12/2025 15:00: 15:00–16:30 = 1.5 h; Thu 1/1 and Fri 2/1 off, Sat 3, Sun 4 off;
    // Mon 5/1 07:00–11:30 = 4.5 h (6 h), 13:00 + 2 h = 15:00 → 8 h.
    assert_eq!(c.deadline(vn(2025, 12, 31, 15, 0, 0), 8), vn(2026, 1, 5, 15, 0, 0));
    // Fri 9/1/2026 13:00: 13:00–16:30 = 3.5 h; Sat 10/1 is worked: 07:00–11:30 = 4.5 h
    // → 8 h exactly at the end of the shift, Sat 10/1 11:30.
    assert_eq!(c.deadline(vn(2026, 1, 9, 13, 0, 0), 8), vn(2026, 1, 10, 11, 30, 0));
}

/// Where `deploy/alertmanager/alertmanager.yml` holds the generated block.
const ALERTMANAGER_YML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/alertmanager/alertmanager.yml");
const GENERATED_BEGIN: &str = "  # BEGIN generated vn-public-holidays";
const GENERATED_END: &str = "  # END generated vn-public-holidays";

#[test]
fn alertmanager_holidays_rendering() {
    let c = WorkCalendar::from_toml(
        "[[holidays]]\ndate = 2024-04-29\nsource = \"x\"\n\
         [[holidays]]\ndate = 2024-04-30\nsource = \"x\"\n\
         [[holidays]]\ndate = 2024-05-01\nsource = \"x\"\n\
         [[holidays]]\ndate = 2024-04-18\nsource = \"x\"\n\
         [[working_days]]\ndate = 2024-05-04\nsource = \"x\"\n",
    )
    .unwrap();
    // Runs stop at the end of a month; make-up days are left out.
    assert_eq!(
        c.alertmanager_holidays("h"),
        concat!(
            "  - name: h\n",
            "    time_intervals:\n",
            "      - {years: ['2024'], months: ['april'], days_of_month: ['18', '29:30'], location: Asia/Ho_Chi_Minh}\n",
            "      - {years: ['2024'], months: ['may'], days_of_month: ['1'], location: Asia/Ho_Chi_Minh}\n",
        )
    );
    assert_eq!(WorkCalendar::default().alertmanager_holidays("h"), "  - name: h\n    time_intervals: []\n");
}

/// The holiday mutes of `deploy/alertmanager/alertmanager.yml` are the
/// embedded calendar's holidays, so the two cannot drift apart. After
/// changing a calendar file, rewrite the block with
/// `D06_BLESS=1 cargo test -p aggregator --lib alertmanager_yml`.
#[test]
fn alertmanager_yml_mutes_the_embedded_holidays() {
    let yml = std::fs::read_to_string(ALERTMANAGER_YML).unwrap();
    let lines: Vec<&str> = yml.lines().collect();
    let begin = lines.iter().position(|l| l.starts_with(GENERATED_BEGIN)).expect("BEGIN marker");
    let end = lines.iter().position(|l| *l == GENERATED_END).expect("END marker");
    assert!(begin < end);
    let current = lines[begin + 1..end].iter().map(|l| format!("{l}\n")).collect::<String>();
    let rendered = cal().alertmanager_holidays("vn-public-holidays");
    if current == rendered {
        return;
    }
    if std::env::var_os("D06_BLESS").is_some() {
        let mut out: Vec<String> = lines[..=begin].iter().map(|l| format!("{l}\n")).collect();
        out.push(rendered);
        out.extend(lines[end..].iter().map(|l| format!("{l}\n")));
        std::fs::write(ALERTMANAGER_YML, out.concat()).unwrap();
        return;
    }
    panic!(
        "{ALERTMANAGER_YML}: the vn-public-holidays block differs from the embedded calendar; \
         rerun with D06_BLESS=1 to rewrite it. Expected:\n{rendered}"
    );
}
