//! Several provinces in one geography, and one province's view of it.
//!
//! A deployment that tracks several provinces counts them through one
//! [`Geography`]: the provinces' own geographies ([`Geography::load_province`])
//! laid end to end, each area's id shifted by the areas before it. GSO codes
//! are national, so a code resolves to one area of one province, and an
//! event in an untracked province stays unknown (a dead letter), as before.
//! Whatever serves one province (its plan, board, report and alerts) takes
//! [`Geography::scoped`]: the same areas and ids, with the levels and codes
//! it lists kept to that province.

use std::sync::Arc;

use super::{AreaId, Geography, GeographyError, GeographyVersion, ProvinceError};

impl Geography {
    /// The geography a deployment tracks: Bình Phước's ([`Geography::load`])
    /// when `codes` is empty, else those provinces (GSO codes of `version`)
    /// from the national data, in the order given.
    pub fn load_provinces(version: GeographyVersion, codes: &[String]) -> Result<Self, ProvinceError> {
        if codes.is_empty() {
            return Ok(Self::load(version)?);
        }
        let parts = codes.iter().map(|c| Self::load_province(version, c)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self::union(parts)?)
    }

    /// The provinces of `parts` in one geography. They must be of one version
    /// and share no code (two provinces never do; the same province twice does).
    pub fn union(parts: Vec<Geography>) -> Result<Self, GeographyError> {
        let mut parts = parts.into_iter().map(|p| Arc::try_unwrap(p.atlas).unwrap_or_else(|a| (*a).clone()));
        let mut g = parts.next().ok_or_else(|| GeographyError("a union of no province".into()))?;
        for p in parts {
            if p.version != g.version {
                return Err(GeographyError("a union of two geography versions".into()));
            }
            let base = u16::try_from(g.areas.len())
                .ok()
                .filter(|b| usize::from(*b) + p.areas.len() <= usize::from(u16::MAX))
                .ok_or_else(|| GeographyError("more areas than an area id can number".into()))?;
            let shift = |a: AreaId| AreaId(a.0 + base);
            let names = format!("{} and {}", g.areas[0].code, p.areas[0].code);
            let clash =
                |what: &str, code: u32| GeographyError(format!("{what} code {code} is in two provinces ({names})"));
            for (code, area) in &p.communes {
                if g.communes.insert(*code, shift(*area)).is_some() {
                    return Err(clash("commune", *code));
                }
            }
            for (code, area) in &p.districts {
                if g.districts.insert(*code, shift(*area)).is_some() {
                    return Err(clash("district", *code));
                }
            }
            g.agree.extend(p.agree.iter().map(|(d, c)| (*d, shift(*c))));
            for (level, codes) in p.by_code {
                let ours = g.by_code.entry(level).or_default();
                for (code, area) in codes {
                    ours.entry(code).or_insert(shift(area));
                }
            }
            g.provinces.extend(p.provinces.iter().map(|a| shift(*a)));
            g.areas.extend(p.areas.into_iter().map(|mut a| {
                a.parent = a.parent.map(shift);
                a
            }));
        }
        Ok(Self::whole(g))
    }

    /// Every province this geography holds, in load order.
    pub fn provinces(&self) -> &[AreaId] {
        &self.atlas.provinces
    }

    /// The province an area rolls up into (the province itself for one).
    pub fn province_of(&self, area: AreaId) -> AreaId {
        self.chain(area).last().unwrap_or(area)
    }

    /// One province's view: the same areas and ids, with
    /// [`Geography::province`], [`Geography::of_level`] and
    /// [`Geography::find`] kept to `province`. Codes still resolve across
    /// every province.
    pub fn scoped(&self, province: AreaId) -> Geography {
        // A province's areas follow it, up to the next province.
        let start = usize::from(province.0);
        let end = self.atlas.provinces.iter().map(|p| usize::from(p.0)).find(|p| *p > start);
        let span = start..end.unwrap_or(self.atlas.areas.len());
        Geography { atlas: Arc::clone(&self.atlas), province, span }
    }

    /// The province with this GSO code, if this geography holds it.
    pub fn province_by_code(&self, code: &str) -> Option<AreaId> {
        self.atlas.provinces.iter().copied().find(|p| self.area(*p).code == code)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::geo::AreaLevel;

    fn codes(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn no_province_listed_is_binh_phuoc_as_before() {
        for version in [GeographyVersion::Pre2025, GeographyVersion::Post2025] {
            let g = Geography::load_provinces(version, &[]).unwrap();
            let alone = Geography::load(version).unwrap();
            assert_eq!(g.areas(), alone.areas());
            assert_eq!(g.provinces(), [alone.province()]);
        }
    }

    #[test]
    fn a_union_resolves_each_province_in_its_own_chain() {
        let v = GeographyVersion::Pre2025;
        let g = Geography::load_provinces(v, &codes(&["70", "74"])).unwrap();
        let (bp, bd) = (Geography::load_province(v, "70").unwrap(), Geography::load_province(v, "74").unwrap());
        assert_eq!(g.areas().len(), bp.areas().len() + bd.areas().len());
        assert_eq!(g.provinces().len(), 2);
        for (part, province) in [(&bp, g.provinces()[0]), (&bd, g.provinces()[1])] {
            assert_eq!(g.area(province).code, part.area(part.province()).code);
            for c in part.of_level(AreaLevel::Commune) {
                let code = &part.area(c).code;
                let a = g.resolve(Some(code), None).unwrap();
                let want: Vec<_> = part.chain(c).map(|x| part.area(x).code.clone()).collect();
                let got: Vec<_> = g.chain(a).map(|x| g.area(x).code.clone()).collect();
                assert_eq!(got, want);
                assert_eq!(g.province_of(a), province);
                let d = part.area(part.chain(c).nth(1).unwrap()).code.clone();
                assert_eq!(g.resolve(Some(code), Some(&d)), Ok(a));
            }
        }
        // A commune of a province not tracked stays unknown.
        let hcm = Geography::load_province(v, "79").unwrap();
        let c = hcm.of_level(AreaLevel::Commune).next().unwrap();
        assert!(g.resolve(Some(&hcm.area(c).code), None).is_err());
        // A commune of one with a district of the other does not agree.
        let (c70, d74) = (bp.of_level(AreaLevel::Commune).next().unwrap(), bd.of_level(AreaLevel::District).next());
        assert!(g.resolve(Some(&bp.area(c70).code), Some(&bd.area(d74.unwrap()).code)).is_err());
    }

    #[test]
    fn a_scoped_view_lists_and_finds_only_its_province() {
        let v = GeographyVersion::Post2025;
        let g = Geography::load_provinces(v, &codes(&["75", "79"])).unwrap();
        let hcm = g.province_by_code("79").unwrap();
        let view = g.scoped(hcm);
        assert_eq!(view.province(), hcm);
        assert_eq!(view.areas(), g.areas());
        // A view shares the areas and code maps; it copies none of them.
        assert!(Arc::ptr_eq(&view.atlas, &g.atlas));
        let part = Geography::load_province(v, "79").unwrap();
        let listed: Vec<_> = view.of_level(AreaLevel::Commune).map(|a| view.area(a).code.clone()).collect();
        let want: Vec<_> = part.of_level(AreaLevel::Commune).map(|a| part.area(a).code.clone()).collect();
        assert_eq!(listed, want);
        let dong_nai_commune = g.area(g.scoped(g.provinces()[0]).of_level(AreaLevel::Commune).next().unwrap());
        assert_eq!(view.find(AreaLevel::Commune, &dong_nai_commune.code), None);
        assert!(g.find(AreaLevel::Commune, &dong_nai_commune.code).is_some());
        assert_eq!(g.of_level(AreaLevel::Province).count(), 2);
    }

    #[test]
    fn a_province_twice_or_an_unknown_one_is_refused() {
        let v = GeographyVersion::Pre2025;
        let e = Geography::load_provinces(v, &codes(&["70", "70"])).unwrap_err();
        assert!(e.to_string().contains("in two provinces"), "{e}");
        let e = Geography::load_provinces(v, &codes(&["70", "99"])).unwrap_err();
        assert!(matches!(e, ProvinceError::Unknown { .. }), "{e}");
    }
}
