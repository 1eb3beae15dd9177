//! The reports' tests: the daily table's cells, averages and ranks, its
//! Markdown and HTML, the numbers, the hotline sums.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aggregator::plan::Plan;
use aggregator::{AreaLevel, Geography, GeographyVersion};
use sinks::clickhouse::HotlineDailyRow;

use crate::fixtures::{d, rows, setup, setup_vneid_unknown};
use crate::hotline::{find_area, hotline_text, official_name, sum_hotline};
use crate::numbers::{average_percent, percent, vi_count, vi_int};
use crate::render::{esc, md};
use crate::table::{Cell, DailyTable};

fn c(covered: i64, target: u64, expected: u64, days_behind: u32, gained: u64) -> Cell {
    Cell { covered, target, expected, days_behind, gained, baseline_known: true }
}

#[test]
fn daily_table_cells_averages_and_ranks() {
    let (g, p) = setup();
    let t = DailyTable::build(&g, &p, &rows(&g, &p), d(4, 16)).unwrap();
    // District cccd: 5 by 20/4 → expected(16/4, day 6 of 10) = round(5 × 6 / 10) = 3;
    // expected(k) for k = 0..=6: 0 1 1 2 2 3 3 (halves up).
    // District vneid: 2 by 30/4 → expected(k) = round(2k / 20): 0 for k ≤ 4, 1 for k = 5..=14.
    let none = c(0, 0, 0, 0, 0);
    let codes: Vec<&str> = t.districts.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["688", "689", "690", "691", "692", "693", "694", "695", "696", "697", "698"]);
    let by = |code: &str| t.districts.iter().find(|r| r.code == code).unwrap();
    // 688: 1 + 2 + 1 = 4 ≥ 3 (one gained today); vneid 1 ≥ 1.
    assert_eq!(by("688").cells, [c(4, 10, 3, 0, 1), c(1, 2, 1, 0, 0), none, none, none]);
    // 689: 12 > 10; vneid 0 < 1, latest day with expected ≤ 0 is 14/4 (k = 4): 2 days.
    assert_eq!(by("689").cells, [c(12, 10, 3, 0, 0), c(0, 2, 1, 2, 0), none, none, none]);
    // 690: 2 before the start + 1 = 3 ≥ 3; vneid 1 gained today.
    assert_eq!(by("690").cells, [c(3, 10, 3, 0, 0), c(1, 2, 1, 0, 1), none, none, none]);
    // 691: 2 < 3, latest k with expected ≤ 2 is 4 (14/4): 2 days.
    assert_eq!(by("691").cells, [c(2, 10, 3, 2, 0), c(0, 2, 1, 2, 0), none, none, none]);
    // 692: the vneid of 17/4 is after the report day.
    assert_eq!(by("692").cells, [c(4, 10, 3, 0, 0), c(1, 2, 1, 0, 0), none, none, none]);
    // No events: cccd met only on the start day (6 days), vneid on 14/4.
    assert_eq!(by("698").cells, [c(0, 10, 3, 6, 0), c(0, 2, 1, 2, 0), none, none, none]);
    // Averages over cccd and vneid (the others have no target), clamped at 1.
    let avg: Vec<(&str, Option<f64>, Option<usize>)> =
        t.districts.iter().take(6).map(|r| (r.code.as_str(), r.average.value, r.rank)).collect();
    assert_eq!(
        avg,
        [
            ("688", Some(0.45), Some(2)), // (0.4 + 0.5) / 2
            ("689", Some(0.5), Some(1)),  // (min(1.2, 1) + 0) / 2
            ("690", Some(0.4), Some(4)),  // (0.3 + 0.5) / 2
            ("691", Some(0.1), Some(5)),  // (0.2 + 0) / 2
            ("692", Some(0.45), Some(2)), // ties with 688
            ("693", Some(0.0), Some(6)),
        ]
    );
    assert!(t.districts[5..].iter().all(|r| r.rank == Some(6)));
    // Province: cccd 4 + 12 + 3 + 2 + 4 = 25 of 110; 55 by 20/4 → expected(k) = round(5.5k):
    // 22 at k = 4 ≤ 25 < 28 at k = 5 → 2 days behind; expected(16/4) = 33.
    // vneid 3 of 22, expected(k) = round(1.1k): 3 at k = 3, 4 at k = 4 → 3 days; expected 7.
    assert_eq!(t.province.cells, [c(25, 110, 33, 2, 1), c(3, 22, 7, 3, 1), none, none, none]);
    assert_eq!(t.province.rank, None);
    assert_eq!(t.province.name, "Tỉnh Bình Phước");
    assert_eq!(average_percent(t.province.average.value.unwrap()), "18,18%"); // (25/110 + 3/22) / 2
    assert!(t.districts.iter().chain([&t.province]).all(|r| r.average.left_out.is_empty()));
    assert!(!t.markdown(None).contains("không tính chỉ tiêu chưa có số liệu nền"), "nothing left out, nothing said");
}

#[test]
fn unknown_baselines_are_left_out_of_averages_and_ranks_and_the_notes_say_where() {
    let (g, p) = setup_vneid_unknown();
    let t = DailyTable::build(&g, &p, &rows(&g, &p), d(4, 16)).unwrap();
    let got: Vec<(&str, Option<f64>, Option<usize>, usize)> =
        t.districts.iter().map(|r| (r.code.as_str(), r.average.value, r.rank, r.average.left_out.len())).collect();
    // Same counts as `daily_table_cells_averages_and_ranks`; only 688 still
    // averages its vneid (1 of 2). Had the unknown vneid counted, 689 would
    // average (1 + 0/2) / 2 = 0.5 and 692 (0.4 + 1/2) / 2 = 0.45, as there.
    assert_eq!(
        got[..6],
        [
            ("688", Some(0.45), Some(2), 0), // (0.4 + 0.5) / 2
            ("689", Some(1.0), Some(1), 1),  // min(1.2, 1), vneid left out
            ("690", Some(0.3), Some(4), 1),
            ("691", Some(0.2), Some(5), 1),
            ("692", Some(0.4), Some(3), 1),
            ("693", Some(0.0), Some(6), 1),
        ]
    );
    assert!(t.districts[5..].iter().all(|r| r.rank == Some(6) && r.average.value == Some(0.0)));
    // Province: cccd 25/110 alone.
    assert_eq!(average_percent(t.province.average.value.unwrap()), "22,73%");
    assert_eq!(t.province.average.left_out, [aggregator::Indicator::Vneid]);
    // The days-behind cells of the unknown baselines are "—", and the notes say what the averages leave out.
    let md = t.markdown(None);
    assert!(
        md.contains(
            "\n- Bình quân và Xếp hạng không tính chỉ tiêu chưa có số liệu nền (số đã đạt chỉ tính từ số tăng, \
             chưa so được với chỉ tiêu): ĐDĐT mức 2 (689, 690, 691, 692, 693, 694, 695, 696, 697, 698, 70).\n"
        ),
        "{md}"
    );
    let line = md.lines().find(|l| l.starts_with("| 689 |")).unwrap();
    assert!(
        line.starts_with(
            "| 689 | Thành phố Đồng Xoài | 12/10 | 120,00% | 30,00% | 0 | 0 | 0/2 | 0,00% | 50,00% | — | 0 |"
        ),
        "{line}"
    );
    assert!(line.ends_with("| 100,00% | 1/11 |"), "{line}");
}

#[test]
fn one_district_in_markdown() {
    let (g, p) = setup();
    let t = DailyTable::build(&g, &p, &rows(&g, &p), d(4, 16)).unwrap();
    let md = t.markdown(g.find(AreaLevel::District, "688"));
    let expected = "\
# Tiến độ “4 phủ” ngày 16/04/2024 — Thị xã Phước Long

Thử \\<b\\>\"A&B\"\\</b\\> \\| \\*x\\*: từ ngày 10/04/2024 đến ngày 30/04/2024; ngày 16/04/2024 là ngày thứ 7/21. Số liệu đến hết ngày.

| Mã | Đơn vị | CCCD: Đạt/chỉ tiêu | CCCD: % | CCCD: % KH | CCCD: Chậm (ngày) | CCCD: Tăng trong ngày | ĐDĐT mức 2: Đạt/chỉ tiêu | ĐDĐT mức 2: % | ĐDĐT mức 2: % KH | ĐDĐT mức 2: Chậm (ngày) | ĐDĐT mức 2: Tăng trong ngày | ĐTTM 4G: Đạt/chỉ tiêu | ĐTTM 4G: % | ĐTTM 4G: % KH | ĐTTM 4G: Chậm (ngày) | ĐTTM 4G: Tăng trong ngày | SIM ký số: Đạt/chỉ tiêu | SIM ký số: % | SIM ký số: % KH | SIM ký số: Chậm (ngày) | SIM ký số: Tăng trong ngày | Chuyển 2G: Đạt/chỉ tiêu | Chuyển 2G: % | Chuyển 2G: % KH | Chuyển 2G: Chậm (ngày) | Chuyển 2G: Tăng trong ngày | Bình quân | Xếp hạng |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| 688 | Thị xã Phước Long | 4/10 | 40,00% | 30,00% | 0 | 1 | 1/2 | 50,00% | 50,00% | 0 | 0 | 0/0 | — | — | 0 | 0 | 0/0 | — | — | 0 | 0 | 0/0 | — | — | 0 | 0 | 45,00% | 2/11 |
";
    assert!(md.starts_with(expected), "{md}");
    assert!(md.contains("\n- Xếp hạng: thứ hạng theo Bình quân (giá trị chính xác) trong 11 huyện, thị xã, thành phố, cao nhất là 1; bằng nhau thì cùng hạng.\n"));
    assert!(!md.contains("Bình Phước |"), "no province row with --area");
    // Every district and the province, in bold, last.
    let full = t.markdown(None);
    let lines: Vec<&str> = full.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(lines.len(), 2 + 11 + 1);
    assert!(lines[13].starts_with("| **70** | **Tỉnh Bình Phước** | **25/110** | **22,73%** | **30,00%** | **2** | **1** | **3/22** | **13,64%** | **31,82%** | **3** | **1** |"), "{}", lines[13]);
    assert!(lines[13].ends_with("| **18,18%** | **—** |"), "{}", lines[13]);
    assert!(
        lines[3].starts_with(
            "| 689 | Thành phố Đồng Xoài | 12/10 | 120,00% | 30,00% | 0 | 0 | 0/2 | 0,00% | 50,00% | 2 | 0 |"
        ),
        "{}",
        lines[3]
    );
}

#[test]
fn html_is_self_contained_and_escaped() {
    let (g, p) = setup();
    let t = DailyTable::build(&g, &p, &rows(&g, &p), d(4, 16)).unwrap();
    let html = t.html(None);
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"vi\">\n<head>\n<meta charset=\"utf-8\">\n<title>Tiến độ “4 phủ” ngày 16/04/2024 — Tỉnh Bình Phước</title>\n"));
    assert!(html.contains("<p>Thử &lt;b&gt;&quot;A&amp;B&quot;&lt;/b&gt; | *x*: từ ngày 10/04/2024"), "{html}");
    assert!(!html.contains("<b>"));
    assert!(!html.contains("http") && !html.contains("src=") && !html.contains("<link"), "no external assets");
    assert!(html.contains("<th colspan=\"5\">ĐDĐT mức 2</th>"));
    assert!(html.contains(
        "<tr><td>691</td><td>Thị xã Phước Long</td>".replace("Thị xã Phước Long", "Huyện Bù Gia Mập").as_str()
    ));
    assert!(html.contains(
        "<tfoot>\n<tr><td>70</td><td>Tỉnh Bình Phước</td><td class=\"n\">25/110</td><td class=\"n\">22,73%</td>"
    ));
    assert!(html.ends_with("</ul>\n</body>\n</html>\n"));
    let one = t.html(g.find(AreaLevel::District, "692"));
    assert_eq!(one.matches("<tr><td>").count(), 1);
    assert!(one.contains("<tr><td>692</td><td>Huyện Lộc Ninh</td><td class=\"n\">4/10</td>"));
    assert!(one.contains("<td class=\"n\">45,00%</td><td class=\"n\">2/11</td></tr>"));
    assert!(!one.contains("<tfoot>"));
}

#[test]
fn missing_days_and_another_plan_are_errors() {
    let (g, p) = setup();
    let all = rows(&g, &p);
    // The pipeline has not reached 18/4.
    let err = DailyTable::build(&g, &p, &all, d(4, 18)).unwrap_err().to_string();
    assert!(err.contains("has not reached"), "{err}");
    // One key lost its row of the day.
    let holed: Vec<_> =
        all.iter().filter(|r| !(r.indicator == "vneid" && r.area == "695" && r.day == d(4, 16))).cloned().collect();
    let err = DailyTable::build(&g, &p, &holed, d(4, 16)).unwrap_err().to_string();
    assert!(err.contains("vneid in district 695"), "{err}");
    // Written under another plan (cccd target 220).
    let other = Plan::from_toml(
        &format!(
            "start = 2024-04-10\nend = 2024-04-30\n[district_weights]\n{}\n[indicators.cccd]\ntarget = 220\nbaseline = 0\n\
             milestones = [ {{ date = 2024-04-30, share = 1.0 }} ]\n",
            (688..=698).map(|c| format!("\"{c}\" = 1\n")).collect::<String>()
        ),
        &g,
    )
    .unwrap();
    let err = DailyTable::build(&g, &other, &all, d(4, 16)).unwrap_err().to_string();
    assert!(err.contains("disagrees with the plan"), "{err}");
}

#[test]
fn numbers_the_vietnamese_way() {
    assert_eq!(vi_int(0), "0");
    assert_eq!(vi_int(999), "999");
    assert_eq!(vi_int(1000), "1.000");
    assert_eq!(vi_int(334_507), "334.507");
    assert_eq!(vi_int(-1_234_567), "-1.234.567");
    assert_eq!(vi_count(1493), "1.493");
    assert_eq!(vi_count(u64::MAX), "18.446.744.073.709.551.615");
    assert_eq!(percent(1, 8), "12,50%");
    assert_eq!(percent(1, 3), "33,33%");
    assert_eq!(percent(2, 3), "66,67%");
    assert_eq!(percent(1, 200_000), "0,00%"); // 0.0005 %
    assert_eq!(percent(1, 20_000), "0,01%"); // 0.005 %: half up
    assert_eq!(percent(-1, 8), "-12,50%");
    assert_eq!(percent(5, 0), "—");
    assert_eq!(percent(123_456, 100), "123.456,00%");
    assert_eq!(average_percent(0.021875), "2,19%");
    assert_eq!(md("a|b_c*"), "a\\|b\\_c\\*");
    assert_eq!(esc("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
}

#[test]
fn hotline_sums_one_area_over_the_days() {
    let g = Geography::load(GeographyVersion::Pre2025).unwrap();
    let row = |day: u32, level: &str, area: &str, received: u64, processed: u64, spam: u64| HotlineDailyRow {
        day: d(4, day),
        area_level: level.into(),
        area: area.into(),
        received,
        answered: processed,
        forwarded: 0,
        processed,
        in_progress: 0,
        spam,
        overdue_specialist: received - processed - spam,
        overdue_leadership: 0,
    };
    let rows = [
        row(2, "district", "692", 3, 2, 0),
        row(3, "district", "692", 1000, 990, 5),
        row(3, "commune", "25270", 1, 1, 0),
        row(3, "district", "693", 2, 2, 0),
    ];
    let c = sum_hotline(&rows, AreaLevel::District, "692");
    assert_eq!((c.received, c.processed, c.spam, c.overdue_specialist, c.answered), (1003, 992, 5, 6, 992));
    let id = find_area(&g, "692").unwrap();
    assert_eq!(g.area(id).level, AreaLevel::District);
    assert_eq!(find_area(&g, "25270").map(|a| g.area(a).level), Some(AreaLevel::Commune));
    assert_eq!(find_area(&g, "70"), Some(g.province()));
    assert_eq!(find_area(&g, "999"), None);
    assert_eq!(
        hotline_text(&c, d(4, 1), d(4, 30), &official_name(&g, id)),
        "Tổng đài 1022 — Huyện Lộc Ninh: tin tiếp nhận từ ngày 01/04/2024 đến ngày 30/04/2024\n\
         Đơn vị\tTổng số tin tiếp nhận\tĐã xử lý\tĐang xử lý\tTin rác\t\
         Quá hạn xử lý (cấp chuyên viên 8 giờ hành chính)\tQuá hạn xử lý (cấp lãnh đạo 48 giờ hành chính)\t\
         Tổng đài viên trả lời trực tiếp\tChuyển các ngành xử lý\n\
         Huyện Lộc Ninh\t1.003\t992\t0\t5\t6\t0\t992\t0\n"
    );
    assert_eq!(official_name(&g, g.province()), "Tỉnh Bình Phước");
}
