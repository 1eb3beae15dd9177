//! Invalid messages on purpose: each [`Defect`] breaks a message so that
//! d06 must reject it with one contract reason.

use ingest::contract::Reason;

/// How an invalid message is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Defect {
    Truncated,
    TrailingBytes,
    Bom,
    NotUtf8,
    SchemaV2,
    UnknownType,
    NoSubject,
    NoArea,
    NoTypeField,
    BadSubject,
    BadEnum,
    NoOffset,
    UnknownArea,
    AreaMismatch,
    Future,
    TooLate,
}

impl Defect {
    pub(crate) fn reason(self) -> Reason {
        match self {
            Defect::Truncated | Defect::TrailingBytes | Defect::Bom | Defect::NotUtf8 => Reason::MalformedJson,
            Defect::SchemaV2 => Reason::UnsupportedSchema,
            Defect::UnknownType => Reason::UnknownType,
            Defect::NoSubject | Defect::NoArea | Defect::NoTypeField => Reason::MissingField,
            Defect::BadSubject | Defect::BadEnum | Defect::NoOffset => Reason::InvalidField,
            Defect::UnknownArea => Reason::UnknownArea,
            Defect::AreaMismatch => Reason::AreaMismatch,
            Defect::Future => Reason::FutureEvent,
            Defect::TooLate => Reason::TooLate,
        }
    }
}

/// Defects by weight: every reason, the common ones (what upstream teams
/// actually get wrong: fields, enums, codes) more often.
pub(crate) const DEFECTS: [(Defect, u32); 16] = [
    (Defect::Truncated, 6),
    (Defect::TrailingBytes, 3),
    (Defect::Bom, 2),
    (Defect::NotUtf8, 2),
    (Defect::SchemaV2, 5),
    (Defect::UnknownType, 5),
    (Defect::NoSubject, 6),
    (Defect::NoArea, 5),
    (Defect::NoTypeField, 6),
    (Defect::BadSubject, 12),
    (Defect::BadEnum, 10),
    (Defect::NoOffset, 8),
    (Defect::UnknownArea, 10),
    (Defect::AreaMismatch, 8),
    (Defect::Future, 6),
    (Defect::TooLate, 6),
];
