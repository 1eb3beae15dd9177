//! The official administrative geography (GSO codes) and how areas roll up.
//!
//! Two versions ship embedded (data copied from `shared/fixtures/geography`,
//! attribution in `aggregator/data/README.md`):
//! - [`GeographyVersion::Pre2025`] (default): province → 11 districts → 111 communes;
//! - [`GeographyVersion::Post2025`]: province → 40 communes, no district tier; old
//!   commune codes are mapped forward through the official old→new table.
//!
//! [`national`] carries all of Vietnam (63 provinces before the reform, 34
//! after, the national old→new table): [`Geography::load_province`] gives any
//! province's geography in the same shape; [`Geography::load`] stays Bình
//! Phước's.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod national;
mod union;
pub use national::{provinces, Province, ProvinceError};

const PRE2025_CSV: &str = include_str!("../../data/binh_phuoc_pre2025_3tier.csv");
const POST2025_CSV: &str = include_str!("../../data/binh_phuoc_area_post2025_2tier.csv");
const OLD_TO_NEW_CSV: &str = include_str!("../../data/binh_phuoc_old_to_new.csv");

/// Which administrative geography areas are resolved and rolled up through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GeographyVersion {
    /// Before the 2025 reform: commune, district, province (the campaign's own).
    #[default]
    Pre2025,
    /// After 1 July 2025: commune and province only.
    Post2025,
}

/// The level of an area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AreaLevel {
    /// The province.
    Province,
    /// A district (pre-2025 only).
    District,
    /// A commune-level unit (xã, phường, thị trấn).
    Commune,
}

impl AreaLevel {
    /// The name used in outputs (`area_level`).
    pub fn as_str(self) -> &'static str {
        match self {
            AreaLevel::Province => "province",
            AreaLevel::District => "district",
            AreaLevel::Commune => "commune",
        }
    }
}

impl fmt::Display for AreaLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Dense index of an area in its [`Geography`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AreaId(pub u16);

/// One administrative unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Area {
    /// Its level.
    pub level: AreaLevel,
    /// GSO code as published (2, 3 or 5 digits).
    pub code: String,
    /// Official name, with diacritics.
    pub name: String,
    /// The area it rolls up into (none for the province).
    pub parent: Option<AreaId>,
}

/// Why a pair of codes did not resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AreaError {
    /// A code is not in the geography.
    #[error("unknown {0} code")]
    Unknown(AreaLevel),
    /// Commune and district are both known but do not belong together.
    #[error("commune does not belong to the district")]
    Mismatch,
}

/// Why the embedded geography failed to load (a build defect, never input).
#[derive(Debug, thiserror::Error)]
#[error("geography data: {0}")]
pub struct GeographyError(String);

/// Areas, their hierarchy, and code resolution.
///
/// Cheap to clone: the areas and code maps sit behind an [`Arc`], shared by
/// every view of them ([`Geography::scoped`]).
#[derive(Clone, Debug)]
pub struct Geography {
    atlas: Arc<Atlas>,
    /// The province this geography serves: its only one, a union's first,
    /// or the one a [`Geography::scoped`] view keeps to.
    province: AreaId,
    /// The ids [`Geography::of_level`] and [`Geography::find`] keep to: a
    /// scoped view's province's own, else all.
    span: Range<usize>,
}

/// What every view of one geography shares.
#[derive(Clone, Debug)]
struct Atlas {
    version: GeographyVersion,
    /// Each province followed by its own areas; provinces end to end.
    areas: Vec<Area>,
    /// Every province it holds, in load order (ascending ids).
    provinces: Vec<AreaId>,
    /// Commune code (old or new) → commune area.
    communes: HashMap<u32, AreaId>,
    /// District code → the area a district-only event counts in.
    districts: HashMap<u32, AreaId>,
    /// (district code, commune area) pairs that agree.
    agree: HashSet<(u32, AreaId)>,
    /// Level → code → area, for [`Geography::find`].
    by_code: HashMap<AreaLevel, HashMap<String, AreaId>>,
}

/// The province of a geography being loaded: always its first area.
const ROOT: AreaId = AreaId(0);

fn col<'a>(headers: &[&str], row: &[&'a str], name: &str) -> Result<&'a str, GeographyError> {
    let i = headers.iter().position(|h| *h == name).ok_or_else(|| GeographyError(format!("missing column {name}")))?;
    row.get(i).copied().ok_or_else(|| GeographyError(format!("short row for {name}")))
}

fn rows(csv: &str) -> (Vec<&str>, Vec<Vec<&str>>) {
    // The embedded files have no quoted fields (checked by a test below).
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let headers = lines.next().unwrap_or_default().split(',').collect();
    let body = lines.map(|l| l.split(',').collect()).collect();
    (headers, body)
}

fn num(s: &str) -> Result<u32, GeographyError> {
    s.parse().map_err(|_| GeographyError(format!("bad code {s:?}")))
}

impl Atlas {
    fn new(version: GeographyVersion, code: &str, name: &str) -> Self {
        let mut atlas = Atlas {
            version,
            areas: Vec::new(),
            provinces: vec![ROOT],
            communes: HashMap::new(),
            districts: HashMap::new(),
            agree: HashSet::new(),
            by_code: HashMap::new(),
        };
        atlas.push(Area { level: AreaLevel::Province, code: code.into(), name: name.into(), parent: None });
        atlas
    }

    fn push(&mut self, area: Area) -> AreaId {
        let id = AreaId(self.areas.len() as u16);
        self.by_code.entry(area.level).or_default().entry(area.code.clone()).or_insert(id);
        self.areas.push(area);
        id
    }

    fn pre2025() -> Result<Self, GeographyError> {
        let (h, body) = rows(PRE2025_CSV);
        let first = body.first().ok_or_else(|| GeographyError("empty pre-2025 file".into()))?;
        let mut g =
            Self::new(GeographyVersion::Pre2025, col(&h, first, "province_code")?, col(&h, first, "province_name")?);
        for r in &body {
            let dcode = col(&h, r, "district_code")?;
            let d = num(dcode)?;
            let did = match g.districts.get(&d) {
                Some(id) => *id,
                None => {
                    let id = g.push(Area {
                        level: AreaLevel::District,
                        code: dcode.into(),
                        name: col(&h, r, "district_name")?.into(),
                        parent: Some(ROOT),
                    });
                    g.districts.insert(d, id);
                    id
                }
            };
            let ccode = col(&h, r, "commune_code")?;
            let cid = g.push(Area {
                level: AreaLevel::Commune,
                code: ccode.into(),
                name: col(&h, r, "commune_name")?.into(),
                parent: Some(did),
            });
            g.communes.insert(num(ccode)?, cid);
            g.agree.insert((d, cid));
        }
        Ok(g)
    }

    fn post2025() -> Result<Self, GeographyError> {
        let (h, body) = rows(POST2025_CSV);
        let first = body.first().ok_or_else(|| GeographyError("empty post-2025 file".into()))?;
        let mut g =
            Self::new(GeographyVersion::Post2025, col(&h, first, "province_code")?, col(&h, first, "province_name")?);
        for r in &body {
            let ccode = col(&h, r, "commune_code")?;
            let cid = g.push(Area {
                level: AreaLevel::Commune,
                code: ccode.into(),
                name: col(&h, r, "commune_name")?.into(),
                parent: Some(ROOT),
            });
            g.communes.insert(num(ccode)?, cid);
        }
        let (h, body) = rows(OLD_TO_NEW_CSV);
        for r in &body {
            let new = num(col(&h, r, "new_commune_code")?)?;
            let cid =
                *g.communes.get(&new).ok_or_else(|| GeographyError(format!("old→new names unknown unit {new}")))?;
            let old = num(col(&h, r, "old_commune_code")?)?;
            g.communes.entry(old).or_insert(cid);
            let d = num(col(&h, r, "old_district_code")?)?;
            // No district tier: a district-only event counts in the province.
            g.districts.insert(d, ROOT);
            g.agree.insert((d, cid));
        }
        Ok(g)
    }
}

impl Geography {
    /// Loads one of the embedded geographies.
    pub fn load(version: GeographyVersion) -> Result<Self, GeographyError> {
        let atlas = match version {
            GeographyVersion::Pre2025 => Atlas::pre2025()?,
            GeographyVersion::Post2025 => Atlas::post2025()?,
        };
        Ok(Self::whole(atlas))
    }

    /// All of `atlas`, serving its first province.
    fn whole(atlas: Atlas) -> Self {
        Geography { span: 0..atlas.areas.len(), atlas: Arc::new(atlas), province: ROOT }
    }

    /// The version loaded.
    pub fn version(&self) -> GeographyVersion {
        self.atlas.version
    }

    /// All areas; an [`AreaId`] indexes this slice.
    pub fn areas(&self) -> &[Area] {
        &self.atlas.areas
    }

    /// One area.
    pub fn area(&self, id: AreaId) -> &Area {
        &self.atlas.areas[id.0 as usize]
    }

    /// The province: a single-province geography's only one, a scoped
    /// view's ([`Geography::scoped`]). A deployment tracking several
    /// provinces asks [`Geography::provinces`] instead.
    pub fn province(&self) -> AreaId {
        self.province
    }

    /// The levels this geography has, coarsest first.
    pub fn levels(&self) -> &'static [AreaLevel] {
        match self.atlas.version {
            GeographyVersion::Pre2025 => &[AreaLevel::Province, AreaLevel::District, AreaLevel::Commune],
            GeographyVersion::Post2025 => &[AreaLevel::Province, AreaLevel::Commune],
        }
    }

    /// The level just below the province, which boards and dashboards rank:
    /// the districts before the 2025 reform, the communes after it.
    pub fn tier(&self) -> AreaLevel {
        self.levels().get(1).copied().unwrap_or(AreaLevel::Commune)
    }

    /// Areas of one level, in file order (a scoped view's: of its province).
    pub fn of_level(&self, level: AreaLevel) -> impl Iterator<Item = AreaId> + '_ {
        let span = self.span();
        self.atlas.areas[span.clone()]
            .iter()
            .zip(span)
            .filter(move |(a, _)| a.level == level)
            .map(|(_, i)| AreaId(i as u16))
    }

    /// The ids this geography lists: a scoped view's province's own (a
    /// province's areas follow it, up to the next province), else all.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The area and every area it rolls up into, most specific first.
    pub fn chain(&self, id: AreaId) -> impl Iterator<Item = AreaId> + '_ {
        std::iter::successors(Some(id), move |a| self.area(*a).parent)
    }

    /// Finds an area by level and code (a scoped view's: in its province).
    pub fn find(&self, level: AreaLevel, code: &str) -> Option<AreaId> {
        self.atlas
            .by_code
            .get(&level)
            .and_then(|codes| codes.get(code))
            .copied()
            .filter(|a| self.span.contains(&usize::from(a.0)))
    }

    /// Resolves an event's codes (already checked to be 5 and 3 ASCII digits)
    /// to the most specific area it counts in.
    pub fn resolve(&self, commune: Option<&str>, district: Option<&str>) -> Result<AreaId, AreaError> {
        let commune = match commune {
            Some(c) => Some(
                c.parse::<u32>()
                    .ok()
                    .and_then(|c| self.atlas.communes.get(&c).copied())
                    .ok_or(AreaError::Unknown(AreaLevel::Commune))?,
            ),
            None => None,
        };
        let district = match district {
            Some(d) => {
                let code = d.parse::<u32>().map_err(|_| AreaError::Unknown(AreaLevel::District))?;
                let area = self.atlas.districts.get(&code).copied().ok_or(AreaError::Unknown(AreaLevel::District))?;
                Some((code, area))
            }
            None => None,
        };
        match (commune, district) {
            (Some(c), Some((d, _))) if self.atlas.agree.contains(&(d, c)) => Ok(c),
            (Some(_), Some(_)) => Err(AreaError::Mismatch),
            (Some(c), None) => Ok(c),
            (None, Some((_, area))) => Ok(area),
            (None, None) => Err(AreaError::Unknown(AreaLevel::Commune)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_have_no_quoted_fields() {
        for f in [PRE2025_CSV, POST2025_CSV, OLD_TO_NEW_CSV] {
            assert!(!f.contains('"'));
        }
    }

    #[test]
    fn pre2025_has_11_districts_and_111_communes() {
        let g = Geography::load(GeographyVersion::Pre2025).unwrap();
        assert_eq!(g.of_level(AreaLevel::District).count(), 11);
        assert_eq!(g.of_level(AreaLevel::Commune).count(), 111);
        assert_eq!(g.area(g.province()).code, "70");
        let c = g.resolve(Some("25216"), None).unwrap();
        let chain: Vec<_> = g.chain(c).map(|a| g.area(a).code.clone()).collect();
        assert_eq!(chain, ["25216", "688", "70"]);
        assert_eq!(g.resolve(Some("25216"), Some("688")), Ok(c));
        assert_eq!(g.resolve(Some("25216"), Some("689")), Err(AreaError::Mismatch));
        assert_eq!(g.resolve(Some("99999"), Some("688")), Err(AreaError::Unknown(AreaLevel::Commune)));
        assert_eq!(g.resolve(None, Some("700")), Err(AreaError::Unknown(AreaLevel::District)));
        let d = g.resolve(None, Some("688")).unwrap();
        assert_eq!(g.area(d).level, AreaLevel::District);
    }

    #[test]
    fn post2025_maps_old_codes_forward() {
        let g = Geography::load(GeographyVersion::Post2025).unwrap();
        assert_eq!(g.of_level(AreaLevel::Commune).count(), 40);
        assert_eq!(g.of_level(AreaLevel::District).count(), 0);
        assert_eq!(g.area(g.province()).code, "75");
        // 25216 (Phường Thác Mơ) became part of 25217 (Phường Phước Long).
        let c = g.resolve(Some("25216"), None).unwrap();
        assert_eq!(g.area(c).code, "25217");
        assert_eq!(g.resolve(Some("25217"), Some("688")), Ok(c));
        assert_eq!(g.resolve(None, Some("688")), Ok(g.province()));
        assert_eq!(g.resolve(Some("25216"), Some("689")), Err(AreaError::Mismatch));
        let chain: Vec<_> = g.chain(c).map(|a| g.area(a).code.clone()).collect();
        assert_eq!(chain, ["25217", "75"]);
    }
}
