//! The daily table written out: Markdown and self-contained HTML.

use std::fmt::Write as _;

use aggregator::AreaId;

use crate::numbers::{average_percent, percent, vi_int};
use crate::table::{DailyTable, Row, INDICATORS, SUB_COLUMNS};

impl DailyTable {
    /// The rows shown: one district, or every district then the province.
    fn shown(&self, only: Option<AreaId>) -> (Vec<&Row>, Option<&Row>) {
        match only {
            Some(a) => (self.districts.iter().filter(|r| r.area == a).collect(), None),
            None => (self.districts.iter().collect(), Some(&self.province)),
        }
    }

    fn title(&self, only: Option<AreaId>) -> String {
        let name = only
            .and_then(|a| self.districts.iter().find(|r| r.area == a))
            .map_or(self.province.name.as_str(), |r| r.name.as_str());
        format!("Tiến độ “4 phủ” ngày {} — {name}", self.day.format("%d/%m/%Y"))
    }

    fn subtitle(&self) -> String {
        let n = (self.day - self.start).num_days() + 1;
        let total = (self.end - self.start).num_days() + 1;
        let name = self.plan_name.as_deref().unwrap_or("Kế hoạch");
        format!(
            "{name}: từ ngày {} đến ngày {}; ngày {} là ngày thứ {n}/{total}. Số liệu đến hết ngày.",
            self.start.format("%d/%m/%Y"),
            self.end.format("%d/%m/%Y"),
            self.day.format("%d/%m/%Y"),
        )
    }

    /// The notes under the table, one sentence each.
    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = INDICATORS.iter().map(|(_, short, long)| format!("{short}: {long}.")).collect();
        notes.extend([
            "Đạt/chỉ tiêu: số đã đạt (cơ sở cộng số tăng, trừ số giảm, đến hết ngày) trên chỉ tiêu giao; %: tỷ lệ đạt.".to_owned(),
            "% KH: số kế hoạch dự kiến đạt đến hết ngày, trên chỉ tiêu giao.".to_owned(),
            "Chậm (ngày): 0 nếu đạt hoặc vượt kế hoạch; nếu không, số ngày kể từ ngày gần nhất mà số kế hoạch dự kiến không vượt quá số đã đạt (từ ngày bắt đầu nếu chưa có ngày nào như vậy); “—” khi chưa có số liệu nền (số đã đạt chỉ tính từ số tăng, không đánh giá chậm).".to_owned(),
            "Tăng trong ngày: số được tính thêm trong ngày (chưa trừ số giảm).".to_owned(),
            "Bình quân: trung bình cộng tỷ lệ đạt (tối đa 100%) của các chỉ tiêu có chỉ tiêu giao và đã có số liệu nền; “—” nếu không có chỉ tiêu nào như vậy.".to_owned(),
            format!(
                "Xếp hạng: thứ hạng theo Bình quân (giá trị chính xác) trong {} huyện, thị xã, thành phố, cao nhất là 1; bằng nhau thì cùng hạng.",
                self.districts.len()
            ),
        ]);
        notes.extend(self.left_out_note());
        notes
    }

    /// Which indicators the averages leave out for an unknown baseline, and
    /// where (every district and the province, or the codes), or nothing.
    fn left_out_note(&self) -> Option<String> {
        let rows: Vec<&Row> = self.districts.iter().chain([&self.province]).collect();
        let parts: Vec<String> = INDICATORS
            .iter()
            .filter_map(|(ind, short, _)| {
                let codes: Vec<&str> =
                    rows.iter().filter(|r| r.average.left_out.contains(ind)).map(|r| r.code.as_str()).collect();
                match codes.len() {
                    0 => None,
                    n if n == rows.len() => Some(format!("{short} (mọi đơn vị)")),
                    _ => Some(format!("{short} ({})", codes.join(", "))),
                }
            })
            .collect();
        (!parts.is_empty()).then(|| {
            format!(
                "Bình quân và Xếp hạng không tính chỉ tiêu chưa có số liệu nền (số đã đạt chỉ tính từ số tăng, chưa so được với chỉ tiêu): {}.",
                parts.join(", ")
            )
        })
    }

    /// The text of a row's cells, in column order.
    fn cells(&self, r: &Row) -> Vec<String> {
        let mut out = vec![r.code.clone(), r.name.clone()];
        for c in &r.cells {
            out.push(format!("{}/{}", vi_int(c.covered), vi_int(i64::try_from(c.target).unwrap_or(i64::MAX))));
            out.push(percent(i128::from(c.covered), c.target));
            out.push(percent(i128::from(c.expected), c.target));
            out.push(if c.baseline_known { c.days_behind.to_string() } else { "—".to_owned() });
            out.push(vi_int(i64::try_from(c.gained).unwrap_or(i64::MAX)));
        }
        out.push(r.average.value.map_or_else(|| "—".to_owned(), average_percent));
        out.push(match r.rank {
            Some(k) => format!("{k}/{}", self.districts.len()),
            None => "—".to_owned(),
        });
        out
    }

    /// The Markdown document.
    pub fn markdown(&self, only: Option<AreaId>) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}\n\n{}\n", md(&self.title(only)), md(&self.subtitle()));
        let mut header = vec!["Mã".to_owned(), "Đơn vị".to_owned()];
        for (_, short, _) in INDICATORS {
            header.extend(SUB_COLUMNS.iter().map(|sub| format!("{short}: {sub}")));
        }
        header.extend(["Bình quân".to_owned(), "Xếp hạng".to_owned()]);
        let line = |cells: &[String]| format!("| {} |\n", cells.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
        s.push_str(&line(&header));
        let align: Vec<&str> = (0..header.len()).map(|i| if i < 2 { "---" } else { "---:" }).collect();
        let _ = writeln!(s, "| {} |", align.join(" | "));
        let (rows, total) = self.shown(only);
        for r in rows {
            s.push_str(&line(&self.cells(r)));
        }
        if let Some(p) = total {
            let mut cells: Vec<String> = self.cells(p).iter().map(|c| md(c)).collect();
            for c in &mut cells {
                *c = format!("**{c}**");
            }
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        s.push_str("\nGhi chú:\n\n");
        for n in self.notes() {
            let _ = writeln!(s, "- {}", md(&n));
        }
        s
    }

    /// The self-contained HTML document.
    pub fn html(&self, only: Option<AreaId>) -> String {
        let mut s = String::new();
        let title = self.title(only);
        s.push_str("<!DOCTYPE html>\n<html lang=\"vi\">\n<head>\n<meta charset=\"utf-8\">\n");
        let _ = writeln!(s, "<title>{}</title>", esc(&title));
        s.push_str(
            "<style>\nbody{font-family:sans-serif;margin:1em}\ntable{border-collapse:collapse;font-size:13px}\n\
             th,td{border:1px solid #999;padding:2px 6px}\nth{background:#eee}\ntd.n{text-align:right}\n\
             tfoot td{font-weight:bold}\n</style>\n</head>\n<body>\n",
        );
        let _ = writeln!(s, "<h1>{}</h1>\n<p>{}</p>\n<table>\n<thead>", esc(&title), esc(&self.subtitle()));
        s.push_str("<tr><th rowspan=\"2\">Mã</th><th rowspan=\"2\">Đơn vị</th>");
        for (_, short, _) in INDICATORS {
            let _ = write!(s, "<th colspan=\"{}\">{}</th>", SUB_COLUMNS.len(), esc(short));
        }
        s.push_str("<th rowspan=\"2\">Bình quân</th><th rowspan=\"2\">Xếp hạng</th></tr>\n<tr>");
        for _ in INDICATORS {
            for sub in SUB_COLUMNS {
                let _ = write!(s, "<th>{}</th>", esc(sub));
            }
        }
        s.push_str("</tr>\n</thead>\n<tbody>\n");
        let row = |s: &mut String, r: &Row| {
            s.push_str("<tr>");
            for (i, c) in self.cells(r).iter().enumerate() {
                let class = if i < 2 { "" } else { " class=\"n\"" };
                let _ = write!(s, "<td{class}>{}</td>", esc(c));
            }
            s.push_str("</tr>\n");
        };
        let (rows, total) = self.shown(only);
        for r in rows {
            row(&mut s, r);
        }
        s.push_str("</tbody>\n");
        if let Some(p) = total {
            s.push_str("<tfoot>\n");
            row(&mut s, p);
            s.push_str("</tfoot>\n");
        }
        s.push_str("</table>\n<p>Ghi chú:</p>\n<ul>\n");
        for n in self.notes() {
            let _ = writeln!(s, "<li>{}</li>", esc(&n));
        }
        s.push_str("</ul>\n</body>\n</html>\n");
        s
    }
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Escapes text for a Markdown paragraph or table cell: punctuation with a
/// meaning is backslash-escaped, line breaks become spaces.
pub(crate) fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}
