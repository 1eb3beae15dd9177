//! Writing one event as a contract-v1 message: the JSON, its spellings
//! (phones, areas, time zones) and, for an invalid message, its defect.

use std::fmt::Write as _;

use chrono::{FixedOffset, Offset as _, Utc};
use ingest::contract::Reason;

use super::lifecycle::Event;
use super::Simulator;
use crate::clock::{format_time, local_date, ms_to_utc, DAY, LOCAL_OFFSET_SECS, SEC};
use crate::defect::Defect;
use crate::message::{Kind, SimMessage};
use crate::population::{citizen_id, phone_number, AGENCIES};
use crate::rng::mix64;

impl Simulator {
    /// Writes an event at `at` (with `defect`, if any) as one message.
    pub(super) fn render(&mut self, e: &Event, at: i64, defect: Option<Defect>) -> SimMessage {
        let mut defect = defect;
        let r = &mut self.rng;
        let (unit, kind, ty) = match e {
            Event::Cccd { unit, .. } => (*unit, Kind::Cccd, "cccd.application"),
            Event::Vneid { unit, .. } => (*unit, Kind::Vneid, "vneid.account"),
            Event::Swap { unit, .. } => (*unit, Kind::Sim, "sim.swap"),
            Event::Signature { unit, .. } => (*unit, Kind::Sim, "sim.signature"),
            Event::Ticket { unit, .. } => (*unit, Kind::Hotline, "hotline.ticket"),
        };
        let u = &self.units[usize::from(unit)];
        // Subject, its home commune, key and source.
        let (subject, key, source, carrier, home): (String, String, &str, &str, u64) = match e {
            Event::Cccd { citizen, .. } | Event::Vneid { citizen, .. } => {
                let id = citizen_id(*citizen, self.cfg.seed, &self.cfg.identity.birth_province);
                let src = if kind == Kind::Cccd { "c06-cccd" } else { "c06-vneid" };
                (id.clone(), id, src, "", *citizen)
            }
            Event::Swap { phone, .. } | Event::Signature { phone, .. } => {
                let number_seed = self.cfg.identity.number_seed.unwrap_or(self.cfg.seed);
                let (national, carrier) = phone_number(*phone, number_seed);
                let spelled = match r.below(10) {
                    0..=6 => national.clone(),
                    7 | 8 => format!("+84{}", &national[1..]),
                    _ => format!("84{}", &national[1..]),
                };
                (spelled, national, carrier, carrier, *phone)
            }
            Event::Ticket { ticket, opened, .. } => {
                let id = format!("{}1022-{}-{:05}", self.cfg.identity.id_prefix, opened.format("%Y%m%d"), ticket);
                (id.clone(), id, "hotline-1022", "", u64::from(*ticket))
            }
        };
        let commune_index = match e {
            Event::Ticket { commune, .. } => usize::from(*commune),
            _ => (mix64(home ^ self.cfg.seed) % u.communes.len().max(1) as u64) as usize,
        };
        let commune = u.communes.get(commune_index).map(String::as_str);
        // Which area fields: commune (90 %), commune and district (7 %), district only (3 %).
        let spell = r.below(100);
        let (mut commune_field, mut district_field) = match (commune, u.district_code.as_deref()) {
            (Some(_), Some(d)) if spell >= 97 => (None, Some(d.to_owned())),
            (Some(c), Some(d)) if spell >= 90 => (Some(c.to_owned()), Some(d.to_owned())),
            (Some(c), _) => (Some(c.to_owned()), None),
            (None, d) => (None, d.map(str::to_owned)),
        };
        // Event time as written.
        let mut written_at = at;
        let mut zulu = r.chance(0.1);
        match defect {
            Some(Defect::Future) => written_at = at + 200 * 365 * DAY,
            Some(Defect::TooLate) => written_at = at - 60 * DAY,
            _ => {}
        }
        if !zulu {
            written_at = written_at.div_euclid(SEC) * SEC;
        }
        let counter = match e {
            Event::Cccd { .. } => 0,
            Event::Vneid { .. } => 1,
            Event::Swap { .. } => 2,
            Event::Signature { .. } => 3,
            Event::Ticket { .. } => 4,
        };
        let event_id = match e {
            Event::Ticket { ticket, opened, step, .. } => {
                let prefix = &self.cfg.identity.id_prefix;
                format!("{prefix}hl1022-{}-{:05}-{}", opened.format("%Y%m%d"), ticket, step)
            }
            _ => {
                self.counters[counter] += 1;
                let n = self.counters[counter];
                let source = format!("{}{source}", self.cfg.identity.id_prefix);
                match e {
                    Event::Cccd { .. } | Event::Vneid { .. } => {
                        format!("{source}-{}-{n:08}", local_date(at).format("%Y%m%d"))
                    }
                    Event::Swap { .. } => format!("{source}-swap-{n:09}"),
                    _ => format!("{source}-sig-{n:09}"),
                }
            }
        };
        let r = &mut self.rng;
        let trace = r.next();
        // Defects that change a field.
        let mut ty_written = ty;
        let mut schema = ingest::contract::SCHEMA_V1;
        let mut subject_written = Some(subject);
        let mut enum_override: Option<&'static str> = None;
        let mut drop_type_field = false;
        let mut no_offset = false;
        match defect {
            Some(Defect::SchemaV2) => schema = "d06.event.v2",
            Some(Defect::UnknownType) => {
                ty_written = match kind {
                    Kind::Cccd => "cccd.renewal",
                    Kind::Vneid => "vneid.login",
                    Kind::Sim => "sim.topup",
                    Kind::Hotline => "hotline.call",
                }
            }
            Some(Defect::NoSubject) => subject_written = None,
            Some(Defect::NoArea) => {
                commune_field = None;
                district_field = None;
            }
            Some(Defect::NoTypeField) => drop_type_field = true,
            Some(Defect::BadSubject) => {
                subject_written = Some(match kind {
                    Kind::Cccd | Kind::Vneid => {
                        format!("0{}{:08}", self.cfg.identity.birth_province, r.below(100_000_000))
                    }
                    // A landline (Bình Phước's area code 0271).
                    Kind::Sim => format!("0271{:07}", r.below(10_000_000)),
                    Kind::Hotline => String::new(),
                })
            }
            Some(Defect::BadEnum) => {
                enum_override = Some(match e {
                    Event::Cccd { .. } => "pending",
                    Event::Vneid { .. } => "verified",
                    Event::Swap { .. } => "tablet",
                    Event::Signature { .. } => "sfone",
                    Event::Ticket { .. } => "closed",
                })
            }
            Some(Defect::NoOffset) => {
                no_offset = true;
                zulu = false;
            }
            Some(Defect::UnknownArea) => {
                commune_field = Some("99999".into());
                district_field = None;
            }
            Some(Defect::AreaMismatch) => {
                // This commune with another district's code.
                let other = self
                    .units
                    .iter()
                    .filter_map(|o| o.district_code.as_deref())
                    .find(|d| Some(*d) != u.district_code.as_deref())
                    .map(str::to_owned);
                match (commune_field.clone().or(commune.map(str::to_owned)), other) {
                    (Some(c), Some(d)) => {
                        commune_field = Some(c);
                        district_field = Some(d);
                    }
                    // No districts (post-2025): an unknown commune instead.
                    _ => {
                        commune_field = Some("99999".into());
                        district_field = None;
                        defect = Some(Defect::UnknownArea);
                    }
                }
            }
            _ => {}
        }
        let occurred = format_time(written_at, zulu, no_offset);
        let mut s = String::with_capacity(320);
        let _ = write!(
            s,
            r#"{{"schema":"{schema}","event_id":"{event_id}","type":"{ty_written}","occurred_at":"{occurred}","source":"{source}""#
        );
        if let Some(c) = &commune_field {
            let _ = write!(s, r#","commune_code":"{c}""#);
        }
        if let Some(d) = &district_field {
            let _ = write!(s, r#","district_code":"{d}""#);
        }
        if let Some(sub) = &subject_written {
            let _ = write!(s, r#","subject":"{sub}""#);
        }
        let first = |name: &str, value: &str, s: &mut String| {
            if !drop_type_field {
                let _ = write!(s, r#","{name}":"{value}""#);
            }
        };
        match e {
            Event::Cccd { stage, channel, .. } => {
                first("stage", enum_override.unwrap_or(stage), &mut s);
                let _ = write!(s, r#","channel":"{channel}""#);
            }
            Event::Vneid { stage, level, .. } => {
                first("stage", enum_override.unwrap_or(stage), &mut s);
                let _ = write!(s, r#","level":{level}"#);
            }
            Event::Swap { to_tech, device, .. } => {
                first("carrier", carrier, &mut s);
                let _ = write!(
                    s,
                    r#","from_tech":"2g","to_tech":"{to_tech}","device":"{}""#,
                    enum_override.unwrap_or(device)
                );
            }
            Event::Signature { stage, .. } => {
                first("carrier", enum_override.unwrap_or(carrier), &mut s);
                let _ = write!(s, r#","stage":"{stage}""#);
            }
            Event::Ticket { status, level, agency, .. } => {
                first("status", enum_override.unwrap_or(status), &mut s);
                let _ = write!(s, r#","level":"{level}""#);
                if let Some(a) = agency.and_then(|a| AGENCIES.get(usize::from(a))) {
                    let _ = write!(s, r#","agency":"{a}""#);
                }
            }
        }
        let _ = write!(s, r#","trace_id":"{trace:016x}"}}"#);
        let mut payload = s.into_bytes();
        match defect {
            Some(Defect::Truncated) => {
                let cut = 1 + r.below(payload.len().saturating_sub(2) as u64) as usize;
                payload.truncate(cut);
            }
            Some(Defect::TrailingBytes) => payload.extend_from_slice(b" {}"),
            Some(Defect::Bom) => {
                payload.splice(0..0, [0xEF, 0xBB, 0xBF]);
            }
            Some(Defect::NotUtf8) => {
                // A Latin-1 "ư" where UTF-8 was expected, inside the trace id.
                let at = payload.len() - 3;
                payload[at] = 0xF9;
            }
            _ => {}
        }
        let offset = FixedOffset::east_opt(if zulu { 0 } else { LOCAL_OFFSET_SECS }).unwrap_or(Utc.fix());
        let shown =
            if no_offset || defect.is_some_and(|d| d.reason() == Reason::MalformedJson) { at } else { written_at };
        SimMessage {
            kind,
            key: subject_written.is_some().then_some(key),
            payload,
            occurred_at: ms_to_utc(shown).with_timezone(&offset),
            emitted_at: ms_to_utc(at),
            invalid: defect.map(Defect::reason),
        }
    }
}
