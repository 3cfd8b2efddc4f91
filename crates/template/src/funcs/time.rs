//! sprig's date functions over Go's `time.Time`: Go's layout-based `Format` and `Parse`,
//! locations (`time.LoadLocation` from the IANA database compiled into the binary, so no file
//! is read), and `Add` with Go's duration syntax.
//!
//! `Local` is UTC: ESO's container has no local zone, so Go's `time.Local` is UTC there.

use std::rc::Rc;

use super::args::{err, s};
use super::duration::parse_duration;
use super::{FResult, Func, Ty};
use crate::value::{Obj, Value};

macro_rules! f {
    ($params:expr, $var:expr, $call:expr) => {
        Func {
            params: $params,
            variadic: $var,
            call: $call,
        }
    };
}

/// A time zone rule, as Go's `*time.Location`.
#[derive(Clone, Debug)]
pub enum Loc {
    /// UTC (also `Local`).
    Utc,
    /// `time.FixedZone(name, offset)`.
    Fixed(Rc<str>, i32),
    /// A zone of the IANA database.
    Zone(jiff::tz::TimeZone),
}

/// Go's `time.Time` (without a monotonic clock reading).
#[derive(Clone, Debug)]
pub struct GoTime {
    /// Seconds since the Unix epoch.
    pub unix: i64,
    /// Nanoseconds within the second.
    pub nsec: u32,
    /// The location.
    pub loc: Loc,
}

/// Seconds from 0001-01-01 to the Unix epoch (Go's zero time).
const ZERO_UNIX: i64 = -62_135_596_800;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in(m: i64, y: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Broken-down local time.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    min: i64,
    sec: i64,
    yday: i64,
    wday: i64,
}

impl Loc {
    /// Offset east of UTC in seconds and zone abbreviation at `unix`.
    fn lookup(&self, unix: i64) -> (i32, String) {
        match self {
            Loc::Utc => (0, "UTC".into()),
            Loc::Fixed(name, off) => (*off, name.to_string()),
            Loc::Zone(tz) => {
                let ts = jiff::Timestamp::new(unix.clamp(-377_705_116_800, 253_402_207_200), 0)
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                let info = tz.to_offset_info(ts);
                (info.offset().seconds(), info.abbreviation().to_string())
            }
        }
    }
}

/// Go's `time.LoadLocation`: `""` and `"UTC"` are UTC, `"Local"` is the (UTC) local zone,
/// anything else names a zone of the database.
pub fn load_location(name: &str) -> Option<Loc> {
    match name {
        "" | "UTC" | "Local" => Some(Loc::Utc),
        _ => {
            if name.contains("..") || name.starts_with('/') || name.contains('\\') {
                return None;
            }
            jiff::tz::TimeZoneDatabase::bundled()
                .get(name)
                .ok()
                .map(Loc::Zone)
        }
    }
}

impl GoTime {
    /// The zero `time.Time`.
    pub fn zero() -> GoTime {
        GoTime {
            unix: ZERO_UNIX,
            nsec: 0,
            loc: Loc::Utc,
        }
    }

    /// `time.Now()`.
    pub fn now() -> GoTime {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        GoTime {
            unix: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
            loc: Loc::Utc,
        }
    }

    /// `time.Unix(sec, 0)` in the local (UTC) zone.
    pub fn from_unix(sec: i64) -> GoTime {
        GoTime {
            unix: sec,
            nsec: 0,
            loc: Loc::Utc,
        }
    }

    /// `t.In(loc)`.
    pub fn with_loc(&self, loc: Loc) -> GoTime {
        GoTime {
            loc,
            ..self.clone()
        }
    }

    /// `t.Add(d)` (saturating as Go's does at the representable range).
    pub fn add(&self, d: i64) -> GoTime {
        let mut unix = self.unix.saturating_add(d.div_euclid(1_000_000_000));
        let mut nsec = i64::from(self.nsec) + d.rem_euclid(1_000_000_000);
        if nsec >= 1_000_000_000 {
            unix = unix.saturating_add(1);
            nsec -= 1_000_000_000;
        }
        GoTime {
            unix,
            nsec: nsec as u32,
            loc: self.loc.clone(),
        }
    }

    /// Nanoseconds from `other` to `self`, saturating (Go's `Sub`).
    pub fn sub(&self, other: &GoTime) -> i64 {
        let d = (i128::from(self.unix) - i128::from(other.unix)) * 1_000_000_000
            + (i128::from(self.nsec) - i128::from(other.nsec));
        d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    fn civil(&self, offset: i32) -> Civil {
        let local = self.unix + i64::from(offset);
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            min: secs % 3600 / 60,
            sec: secs % 60,
            yday: days - days_from_civil(year, 1, 1) + 1,
            wday: (days + 4).rem_euclid(7),
        }
    }

    /// Go's `Time.Format`.
    pub fn format(&self, layout: &[u8]) -> Vec<u8> {
        let (offset, name) = self.loc.lookup(self.unix);
        let c = self.civil(offset);
        let mut out = Vec::new();
        let mut layout = layout;
        while !layout.is_empty() {
            let (prefix, std, suffix) = next_std(layout);
            out.extend_from_slice(prefix);
            let Some(std) = std else { break };
            layout = suffix;
            format_std(&mut out, std, &c, self.nsec, offset, &name);
        }
        out
    }

    /// Go's `Time.String`.
    pub fn string(&self) -> String {
        String::from_utf8_lossy(&self.format(b"2006-01-02 15:04:05.999999999 -0700 MST")).into()
    }

    /// A zero-argument method of `time.Time`, for `{{ $t.Year }}`.
    pub fn method(&self, name: &str) -> Option<Value> {
        let (offset, _) = self.loc.lookup(self.unix);
        let c = self.civil(offset);
        Some(match name {
            "Year" => Value::Int(c.year),
            "Month" => Value::str(MONTHS[(c.month - 1) as usize]),
            "Day" => Value::Int(c.day),
            "Hour" => Value::Int(c.hour),
            "Minute" => Value::Int(c.min),
            "Second" => Value::Int(c.sec),
            "Nanosecond" => Value::Int(i64::from(self.nsec)),
            "YearDay" => Value::Int(c.yday),
            "Weekday" => Value::str(DAYS[c.wday as usize]),
            "Unix" => Value::Int64(self.unix),
            "UnixMilli" => Value::Int64(
                self.unix
                    .saturating_mul(1000)
                    .saturating_add(i64::from(self.nsec / 1_000_000)),
            ),
            "UnixNano" => Value::Int64(
                self.unix
                    .wrapping_mul(1_000_000_000)
                    .wrapping_add(i64::from(self.nsec)),
            ),
            "IsZero" => Value::Bool(self.unix == ZERO_UNIX && self.nsec == 0),
            "String" => Value::str(self.string()),
            "UTC" | "Local" => Value::Obj(Rc::new(Obj::Time(self.with_loc(Loc::Utc)))),
            _ => return None,
        })
    }
}

/// A layout element (Go's `std*` constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    Tz,
    /// Numeric zone: ISO 8601 `Z` form, colons, seconds, hours only.
    NumTz {
        iso: bool,
        colon: bool,
        secs: bool,
        short: bool,
    },
    /// Fractional seconds: separator, digits, and whether trailing zeros are dropped.
    Frac {
        sep: u8,
        n: usize,
        nines: bool,
    },
}

fn lower_start(s: &[u8]) -> bool {
    s.first().is_some_and(u8::is_ascii_lowercase)
}

/// Go's `nextStdChunk`: literal prefix, element, rest.
fn next_std(l: &[u8]) -> (&[u8], Option<Std>, &[u8]) {
    let at = |i: usize, p: &[u8]| l.len() >= i + p.len() && &l[i..i + p.len()] == p;
    for i in 0..l.len() {
        let one = |std: Std, n: usize| (&l[..i], Some(std), &l[i + n..]);
        match l[i] {
            b'J' if at(i, b"Jan") => {
                if at(i, b"January") {
                    return one(Std::LongMonth, 7);
                }
                if !lower_start(&l[i + 3..]) {
                    return one(Std::Month, 3);
                }
            }
            b'M' if l.len() >= i + 3 => {
                if at(i, b"Mon") {
                    if at(i, b"Monday") {
                        return one(Std::LongWeekDay, 6);
                    }
                    if !lower_start(&l[i + 3..]) {
                        return one(Std::WeekDay, 3);
                    }
                }
                if at(i, b"MST") {
                    return one(Std::Tz, 3);
                }
            }
            b'0' => {
                if l.len() >= i + 2 && (b'1'..=b'6').contains(&l[i + 1]) {
                    let std = [
                        Std::ZeroMonth,
                        Std::ZeroDay,
                        Std::ZeroHour12,
                        Std::ZeroMinute,
                        Std::ZeroSecond,
                        Std::Year,
                    ][(l[i + 1] - b'1') as usize];
                    return one(std, 2);
                }
                if at(i, b"002") {
                    return one(Std::ZeroYearDay, 3);
                }
            }
            b'1' => {
                if at(i, b"15") {
                    return one(Std::Hour, 2);
                }
                return one(Std::NumMonth, 1);
            }
            b'2' => {
                if at(i, b"2006") {
                    return one(Std::LongYear, 4);
                }
                return one(Std::Day, 1);
            }
            b'_' => {
                if at(i, b"_2") {
                    if at(i, b"_2006") {
                        return (&l[..i + 1], Some(Std::LongYear), &l[i + 5..]);
                    }
                    return one(Std::UnderDay, 2);
                }
                if at(i, b"__2") {
                    return one(Std::UnderYearDay, 3);
                }
            }
            b'3' => return one(Std::Hour12, 1),
            b'4' => return one(Std::Minute, 1),
            b'5' => return one(Std::Second, 1),
            b'P' if at(i, b"PM") => return one(Std::PM, 2),
            b'p' if at(i, b"pm") => return one(Std::Pm, 2),
            c @ (b'-' | b'Z') => {
                let iso = c == b'Z';
                let forms: [(&[u8], bool, bool, bool); 5] = [
                    (b"070000", false, true, false),
                    (b"07:00:00", true, true, false),
                    (b"0700", false, false, false),
                    (b"07:00", true, false, false),
                    (b"07", false, false, true),
                ];
                for (p, colon, secs, short) in forms {
                    if at(i + 1, p) {
                        return one(
                            Std::NumTz {
                                iso,
                                colon,
                                secs,
                                short,
                            },
                            1 + p.len(),
                        );
                    }
                }
            }
            sep @ (b'.' | b',') if i + 1 < l.len() && (l[i + 1] == b'0' || l[i + 1] == b'9') => {
                let ch = l[i + 1];
                let mut j = i + 1;
                while j < l.len() && l[j] == ch {
                    j += 1;
                }
                if !(j < l.len() && l[j].is_ascii_digit()) {
                    return (
                        &l[..i],
                        Some(Std::Frac {
                            sep,
                            n: j - i - 1,
                            nines: ch == b'9',
                        }),
                        &l[j..],
                    );
                }
            }
            _ => {}
        }
    }
    (l, None, &[])
}

fn pad_int(out: &mut Vec<u8>, v: i64, width: usize) {
    let s = v.unsigned_abs().to_string();
    if v < 0 {
        out.push(b'-');
    }
    for _ in s.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(s.as_bytes());
}

fn format_std(out: &mut Vec<u8>, std: Std, c: &Civil, nsec: u32, offset: i32, name: &str) {
    match std {
        Std::Year => pad_int(out, c.year.rem_euclid(100), 2),
        Std::LongYear => pad_int(out, c.year, 4),
        Std::Month => out.extend_from_slice(&MONTHS[(c.month - 1) as usize].as_bytes()[..3]),
        Std::LongMonth => out.extend_from_slice(MONTHS[(c.month - 1) as usize].as_bytes()),
        Std::NumMonth => pad_int(out, c.month, 0),
        Std::ZeroMonth => pad_int(out, c.month, 2),
        Std::WeekDay => out.extend_from_slice(&DAYS[c.wday as usize].as_bytes()[..3]),
        Std::LongWeekDay => out.extend_from_slice(DAYS[c.wday as usize].as_bytes()),
        Std::Day => pad_int(out, c.day, 0),
        Std::UnderDay => {
            if c.day < 10 {
                out.push(b' ');
            }
            pad_int(out, c.day, 0)
        }
        Std::ZeroDay => pad_int(out, c.day, 2),
        Std::UnderYearDay => {
            if c.yday < 100 {
                out.push(b' ');
                if c.yday < 10 {
                    out.push(b' ');
                }
            }
            pad_int(out, c.yday, 0)
        }
        Std::ZeroYearDay => pad_int(out, c.yday, 3),
        Std::Hour => pad_int(out, c.hour, 2),
        Std::Hour12 | Std::ZeroHour12 => {
            let h = match c.hour % 12 {
                0 => 12,
                h => h,
            };
            pad_int(out, h, if std == Std::Hour12 { 0 } else { 2 })
        }
        Std::Minute => pad_int(out, c.min, 0),
        Std::ZeroMinute => pad_int(out, c.min, 2),
        Std::Second => pad_int(out, c.sec, 0),
        Std::ZeroSecond => pad_int(out, c.sec, 2),
        Std::PM => out.extend_from_slice(if c.hour >= 12 { b"PM" } else { b"AM" }),
        Std::Pm => out.extend_from_slice(if c.hour >= 12 { b"pm" } else { b"am" }),
        Std::NumTz {
            iso,
            colon,
            secs,
            short,
        } => {
            if iso && offset == 0 {
                out.push(b'Z');
                return;
            }
            let mut zone = offset / 60;
            let mut abs = offset;
            if zone < 0 {
                out.push(b'-');
                zone = -zone;
                abs = -abs;
            } else {
                out.push(b'+');
            }
            pad_int(out, i64::from(zone / 60), 2);
            if colon {
                out.push(b':');
            }
            if !short {
                pad_int(out, i64::from(zone % 60), 2);
            }
            if secs {
                if colon {
                    out.push(b':');
                }
                pad_int(out, i64::from(abs % 60), 2);
            }
        }
        Std::Tz => {
            if !name.is_empty() {
                out.extend_from_slice(name.as_bytes());
                return;
            }
            let mut zone = offset / 60;
            if zone < 0 {
                out.push(b'-');
                zone = -zone;
            } else {
                out.push(b'+');
            }
            pad_int(out, i64::from(zone / 60), 2);
            pad_int(out, i64::from(zone % 60), 2);
        }
        Std::Frac { sep, n, nines } => {
            let digits = format!("{nsec:09}");
            let mut d = &digits.as_bytes()[..n.min(9)];
            if nines {
                while d.last() == Some(&b'0') {
                    d = &d[..d.len() - 1];
                }
                if d.is_empty() {
                    return;
                }
            }
            out.push(sep);
            out.extend_from_slice(d);
            // Go pads layouts with more than nine digits with zeros.
            if !nines {
                for _ in 9..n {
                    out.push(b'0');
                }
            }
        }
    }
}

/// Go's `getnum`: one or two digits (exactly two when `fixed`).
fn getnum(v: &[u8], fixed: bool) -> Option<(i64, &[u8])> {
    let d0 = *v.first()?;
    if !d0.is_ascii_digit() {
        return None;
    }
    match v.get(1) {
        Some(d1) if d1.is_ascii_digit() => {
            Some((i64::from(d0 - b'0') * 10 + i64::from(d1 - b'0'), &v[2..]))
        }
        _ if fixed => None,
        _ => Some((i64::from(d0 - b'0'), &v[1..])),
    }
}

/// Go's `getnum3`.
fn getnum3(v: &[u8], fixed: bool) -> Option<(i64, &[u8])> {
    let mut n = 0;
    let mut i = 0;
    while i < 3 && i < v.len() && v[i].is_ascii_digit() {
        n = n * 10 + i64::from(v[i] - b'0');
        i += 1;
    }
    if i == 0 || (fixed && i != 3) {
        return None;
    }
    Some((n, &v[i..]))
}

fn cutspace(mut s: &[u8]) -> &[u8] {
    while s.first() == Some(&b' ') {
        s = &s[1..];
    }
    s
}

/// Go's `skip`: matches the literal `prefix`, where spaces match any run of spaces.
fn skip<'a>(mut value: &'a [u8], mut prefix: &[u8]) -> Option<&'a [u8]> {
    while let Some(&p) = prefix.first() {
        if p == b' ' {
            if !value.is_empty() && value[0] != b' ' {
                return None;
            }
            prefix = cutspace(prefix);
            value = cutspace(value);
            continue;
        }
        if value.first() != Some(&p) {
            return None;
        }
        prefix = &prefix[1..];
        value = &value[1..];
    }
    Some(value)
}

fn lookup_name<'a>(names: &[&str], n: Option<usize>, v: &'a [u8]) -> Option<(usize, &'a [u8])> {
    for (i, name) in names.iter().enumerate() {
        let name = match n {
            Some(n) => &name.as_bytes()[..n],
            None => name.as_bytes(),
        };
        if v.len() >= name.len() && v[..name.len()].eq_ignore_ascii_case(name) {
            return Some((i, &v[name.len()..]));
        }
    }
    None
}

/// Go's `parseTimeZone`: the length of a zone abbreviation at the start of `v`.
fn parse_tz(v: &[u8]) -> Option<usize> {
    if v.len() < 3 {
        return None;
    }
    if v.len() >= 4 && (&v[..4] == b"ChST" || &v[..4] == b"MeST") {
        return Some(4);
    }
    if &v[..3] == b"GMT" {
        return Some(3 + parse_sign_off(&v[3..]));
    }
    if v[0] == b'+' || v[0] == b'-' {
        let n = parse_sign_off(v);
        return (n > 0).then_some(n);
    }
    let upper = v
        .iter()
        .take(6)
        .take_while(|c| c.is_ascii_uppercase())
        .count();
    match upper {
        3 => Some(3),
        4 if v[3] == b'T' || &v[..4] == b"WITA" => Some(4),
        5 if v[4] == b'T' => Some(5),
        _ => None,
    }
}

/// Go's `parseSignedOffset`: `+h` or `-hh` within ±23.
fn parse_sign_off(v: &[u8]) -> usize {
    let Some(&sign) = v.first() else { return 0 };
    if sign != b'+' && sign != b'-' {
        return 0;
    }
    let digits = v[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 2 {
        return 0;
    }
    let x: i64 = std::str::from_utf8(&v[1..1 + digits])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(99);
    if x > 23 {
        return 0;
    }
    1 + digits
}

/// The zone offset hours (`GMT+3`) in a `GMT` abbreviation.
fn gmt_offset(name: &[u8]) -> i32 {
    if name.len() > 3 {
        let s = std::str::from_utf8(&name[3..]).unwrap_or("0");
        return s.trim_start_matches('+').parse::<i32>().unwrap_or(0) * 3600;
    }
    0
}

/// Go's `time.ParseInLocation(layout, value, Local)` with `Local` = UTC.
pub fn parse(layout: &[u8], value: &[u8]) -> Result<GoTime, String> {
    let bad = || "cannot parse the value with the layout".to_string();
    let (mut year, mut month, mut day, mut yday) = (0i64, -1i64, -1i64, -1i64);
    let (mut hour, mut min, mut sec, mut nsec) = (0i64, 0i64, 0i64, 0i64);
    let (mut pm_set, mut am_set) = (false, false);
    let mut zone_offset: Option<i32> = None;
    let mut zone_name: Option<Vec<u8>> = None;
    let mut utc_z = false;
    let mut layout = layout;
    let mut value = value;
    loop {
        let (prefix, std, suffix) = next_std(layout);
        value = skip(value, prefix).ok_or_else(bad)?;
        let Some(std) = std else {
            if !value.is_empty() {
                return Err("extra text after the value".into());
            }
            break;
        };
        layout = suffix;
        let range = |v: i64, lo: i64, hi: i64| -> Result<i64, String> {
            if v < lo || v > hi {
                Err("value out of range".into())
            } else {
                Ok(v)
            }
        };
        match std {
            Std::Year => {
                if value.len() < 2 || !value[..2].iter().all(u8::is_ascii_digit) {
                    return Err(bad());
                }
                let y = i64::from(value[0] - b'0') * 10 + i64::from(value[1] - b'0');
                year = if y >= 69 { y + 1900 } else { y + 2000 };
                value = &value[2..];
            }
            Std::LongYear => {
                if value.len() < 4 || !value[..4].iter().all(u8::is_ascii_digit) {
                    return Err(bad());
                }
                year = std::str::from_utf8(&value[..4])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)?;
                value = &value[4..];
            }
            Std::Month | Std::LongMonth => {
                let (m, rest) = lookup_name(
                    &MONTHS,
                    if std == Std::Month { Some(3) } else { None },
                    value,
                )
                .ok_or_else(bad)?;
                month = m as i64 + 1;
                value = rest;
            }
            Std::NumMonth | Std::ZeroMonth => {
                let (m, rest) = getnum(value, std == Std::ZeroMonth).ok_or_else(bad)?;
                month = range(m, 1, 12)?;
                value = rest;
            }
            Std::WeekDay | Std::LongWeekDay => {
                let (_, rest) = lookup_name(
                    &DAYS,
                    if std == Std::WeekDay { Some(3) } else { None },
                    value,
                )
                .ok_or_else(bad)?;
                value = rest;
            }
            Std::Day | Std::UnderDay | Std::ZeroDay => {
                if std == Std::UnderDay && value.first() == Some(&b' ') {
                    value = &value[1..];
                }
                let (d, rest) = getnum(value, std == Std::ZeroDay).ok_or_else(bad)?;
                day = d;
                value = rest;
            }
            Std::UnderYearDay | Std::ZeroYearDay => {
                for _ in 0..2 {
                    if std == Std::UnderYearDay && value.first() == Some(&b' ') {
                        value = &value[1..];
                    }
                }
                let (d, rest) = getnum3(value, std == Std::ZeroYearDay).ok_or_else(bad)?;
                yday = range(d, 1, 366)?;
                value = rest;
            }
            Std::Hour => {
                let (h, rest) = getnum(value, false).ok_or_else(bad)?;
                hour = range(h, 0, 23)?;
                value = rest;
            }
            Std::Hour12 | Std::ZeroHour12 => {
                let (h, rest) = getnum(value, std == Std::ZeroHour12).ok_or_else(bad)?;
                hour = range(h, 0, 12)?;
                value = rest;
            }
            Std::Minute | Std::ZeroMinute => {
                let (m, rest) = getnum(value, std == Std::ZeroMinute).ok_or_else(bad)?;
                min = range(m, 0, 59)?;
                value = rest;
            }
            Std::Second | Std::ZeroSecond => {
                let (s, rest) = getnum(value, std == Std::ZeroSecond).ok_or_else(bad)?;
                sec = range(s, 0, 59)?;
                value = rest;
                // A fractional second in the value that the layout does not show.
                if value.len() >= 2
                    && (value[0] == b'.' || value[0] == b',')
                    && value[1].is_ascii_digit()
                {
                    let next = next_std(layout).1;
                    if !matches!(next, Some(Std::Frac { .. })) {
                        let n = 1 + value[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                        nsec = parse_nanos(&value[..n])?;
                        value = &value[n..];
                    }
                }
            }
            Std::PM | Std::Pm => {
                if value.len() < 2 {
                    return Err(bad());
                }
                let p = &value[..2];
                let (pm, am): (&[u8], &[u8]) = if std == Std::PM {
                    (b"PM", b"AM")
                } else {
                    (b"pm", b"am")
                };
                if p == pm {
                    pm_set = true;
                } else if p == am {
                    am_set = true;
                } else {
                    return Err(bad());
                }
                value = &value[2..];
            }
            Std::NumTz {
                iso,
                colon,
                secs,
                short,
            } => {
                if iso && value.first() == Some(&b'Z') {
                    value = &value[1..];
                    utc_z = true;
                    continue;
                }
                let need = 3 + if short { 0 } else { 2 } + if colon && !short { 1 } else { 0 };
                let need = need + if secs { 2 + usize::from(colon) } else { 0 };
                if value.len() < need {
                    return Err(bad());
                }
                let sign = value[0];
                if sign != b'+' && sign != b'-' {
                    return Err(bad());
                }
                let num = |v: &[u8]| -> Result<i32, String> {
                    if v.len() == 2 && v.iter().all(u8::is_ascii_digit) {
                        Ok(i32::from(v[0] - b'0') * 10 + i32::from(v[1] - b'0'))
                    } else {
                        Err(bad())
                    }
                };
                let hh = num(&value[1..3])?;
                let mut i = 3;
                let mut mm = 0;
                let mut ss = 0;
                if !short {
                    if colon {
                        if value[i] != b':' {
                            return Err(bad());
                        }
                        i += 1;
                    }
                    mm = num(&value[i..i + 2])?;
                    i += 2;
                }
                if secs {
                    if colon {
                        if value[i] != b':' {
                            return Err(bad());
                        }
                        i += 1;
                    }
                    ss = num(&value[i..i + 2])?;
                    i += 2;
                }
                if hh > 24 || mm > 60 || ss > 60 {
                    return Err("time zone offset out of range".into());
                }
                let mut off = (hh * 60 + mm) * 60 + ss;
                if sign == b'-' {
                    off = -off;
                }
                zone_offset = Some(off);
                value = &value[i..];
            }
            Std::Tz => {
                if value.len() >= 3 && &value[..3] == b"UTC" {
                    utc_z = true;
                    value = &value[3..];
                    continue;
                }
                let n = parse_tz(value).ok_or_else(bad)?;
                zone_name = Some(value[..n].to_vec());
                value = &value[n..];
            }
            Std::Frac { n, nines, .. } => {
                if !nines {
                    let nd = 1 + n;
                    if value.len() < nd {
                        return Err(bad());
                    }
                    nsec = parse_nanos(&value[..nd])?;
                    value = &value[nd..];
                } else {
                    if value.len() < 2
                        || !(value[0] == b'.' || value[0] == b',')
                        || !value[1].is_ascii_digit()
                    {
                        continue;
                    }
                    let nd = 1 + value[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    nsec = parse_nanos(&value[..nd])?;
                    value = &value[nd..];
                }
            }
        }
    }
    if pm_set && hour < 12 {
        hour += 12;
    } else if am_set && hour == 12 {
        hour = 0;
    }
    if yday >= 0 {
        let (mut m, mut d) = (0, 0);
        let mut yd = yday;
        if is_leap(year) {
            if yd == 31 + 29 {
                m = 2;
                d = 29;
            } else if yd > 31 + 29 {
                yd -= 1;
            }
        }
        if m == 0 {
            // Month and day from a non-leap-year day of year.
            let mut acc = 0;
            for mm in 1..=12 {
                let len = days_in(mm, 2001);
                if yd <= acc + len {
                    m = mm;
                    d = yd - acc;
                    break;
                }
                acc += len;
            }
        }
        if (month >= 0 && month != m) || (day >= 0 && day != d) {
            return Err("day-of-year does not match".into());
        }
        month = m;
        day = d;
    } else {
        if month < 0 {
            month = 1;
        }
        if day < 0 {
            day = 1;
        }
    }
    if day < 1 || day > days_in(month, year) {
        return Err("day out of range".into());
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
    let mut t = GoTime {
        unix: local,
        nsec: nsec as u32,
        loc: Loc::Utc,
    };
    if utc_z {
        return Ok(t);
    }
    if let Some(off) = zone_offset {
        t.unix = local - i64::from(off);
        // The local zone (UTC) is used when it has that offset and name.
        let name_ok = zone_name.as_deref().is_none_or(|n| n == b"UTC");
        if off != 0 || !name_ok {
            let name: String = zone_name
                .map(|n| String::from_utf8_lossy(&n).into_owned())
                .unwrap_or_default();
            t.loc = Loc::Fixed(name.into(), off);
        }
        return Ok(t);
    }
    if let Some(name) = zone_name {
        // The local zone (UTC) knows only the name "UTC", handled above.
        let off = if name.starts_with(b"GMT") {
            gmt_offset(&name)
        } else {
            0
        };
        // Go keeps the instant of the UTC reading and only labels it with the zone.
        t.loc = Loc::Fixed(String::from_utf8_lossy(&name).into(), off);
        return Ok(t);
    }
    Ok(t)
}

/// Go's `parseNanoseconds` of `.ddd` (separator included).
fn parse_nanos(v: &[u8]) -> Result<i64, String> {
    if v.len() < 2 || !(v[0] == b'.' || v[0] == b',') {
        return Err("bad fractional second".into());
    }
    let digits = &v[1..];
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err("bad fractional second".into());
    }
    let mut n: i64 = 0;
    for (i, d) in digits.iter().enumerate() {
        if i >= 9 {
            break;
        }
        n = n * 10 + i64::from(d - b'0');
    }
    for _ in digits.len()..9 {
        n *= 10;
    }
    Ok(n)
}

fn time_value(t: GoTime) -> Value {
    Value::Obj(Rc::new(Obj::Time(t)))
}

/// The `time.Time` in a value, if it is one.
pub fn as_time(v: &Value) -> Option<&GoTime> {
    match v {
        Value::Obj(o) => match &**o {
            Obj::Time(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// sprig's date argument: a `time.Time` or seconds since the epoch (`int`, `int64`); anything
/// else means now.
fn date_arg(v: &Value) -> GoTime {
    match v {
        Value::Int(i) | Value::Int64(i) => GoTime::from_unix(*i),
        v => as_time(v).cloned().unwrap_or_else(GoTime::now),
    }
}

fn date_in_zone(layout: &[u8], date: &Value, zone: &[u8]) -> FResult {
    let t = date_arg(date);
    let loc = std::str::from_utf8(zone)
        .ok()
        .and_then(load_location)
        .unwrap_or(Loc::Utc);
    Ok(Value::str(t.with_loc(loc).format(layout)))
}

fn date_modify(a: &[Value], must: bool) -> FResult {
    let t = as_time(&a[1]).cloned().unwrap_or_else(GoTime::zero);
    match parse_duration(s(a, 0)) {
        Some(d) => Ok(time_value(t.add(d))),
        None if must => Err(err("time: invalid duration")),
        None => Ok(time_value(t)),
    }
}

fn ago(a: &[Value]) -> FResult {
    let t = match &a[0] {
        Value::Int(i) | Value::Int64(i) => GoTime::from_unix(*i),
        v => as_time(v).cloned().unwrap_or_else(GoTime::now),
    };
    let d = GoTime::now().sub(&t);
    // Round to seconds, halves away from zero.
    let r = d / 1_000_000_000 * 1_000_000_000;
    let rem = d - r;
    let r = if rem.abs() * 2 >= 1_000_000_000 {
        r + rem.signum() * 1_000_000_000
    } else {
        r
    };
    Ok(Value::str(super::duration::duration_string(r)))
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "now" => f!(&[], None, |_, _| Ok(time_value(GoTime::now()))),
        "date" => f!(&[Str, Any], None, |_, a| date_in_zone(
            s(&a, 0),
            &a[1],
            b"Local"
        )),
        "htmlDate" => f!(&[Any], None, |_, a| date_in_zone(
            b"2006-01-02",
            &a[0],
            b"Local"
        )),
        "htmlDateInZone" => f!(&[Any, Str], None, |_, a| date_in_zone(
            b"2006-01-02",
            &a[0],
            s(&a, 1)
        )),
        "dateInZone" | "date_in_zone" => f!(&[Str, Any, Str], None, |_, a| date_in_zone(
            s(&a, 0),
            &a[1],
            s(&a, 2)
        )),
        "dateModify" | "date_modify" => f!(&[Str, Time], None, |_, a| date_modify(&a, false)),
        "mustDateModify" | "must_date_modify" => {
            f!(&[Str, Time], None, |_, a| date_modify(&a, true))
        }
        "toDate" => f!(&[Str, Str], None, |_, a| Ok(time_value(
            parse(s(&a, 0), s(&a, 1)).unwrap_or_else(|_| GoTime::zero())
        ))),
        "mustToDate" => f!(&[Str, Str], None, |_, a| parse(s(&a, 0), s(&a, 1))
            .map(time_value)
            .map_err(|e| err(format!("parsing time: {e}")))),
        "unixEpoch" => f!(&[Time], None, |_, a| Ok(Value::str(
            as_time(&a[0]).map_or(ZERO_UNIX, |t| t.unix).to_string()
        ))),
        "ago" => f!(&[Any], None, |_, a| ago(&a)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for d in [-719_468 - 1000, -1, 0, 1, 10_957, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn formats_like_go() {
        let t = GoTime::from_unix(1_136_239_445); // 2006-01-02T22:04:05Z
        assert_eq!(
            t.format(b"Mon Jan _2 15:04:05 MST 2006"),
            b"Mon Jan  2 22:04:05 UTC 2006"
        );
        assert_eq!(t.string(), "2006-01-02 22:04:05 +0000 UTC");
        assert_eq!(GoTime::zero().string(), "0001-01-01 00:00:00 +0000 UTC");
    }
}
