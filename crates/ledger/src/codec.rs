//! The link codec: how an order's magic number names the position it closes or protects.
//!
//! A link magic carries a service kind (regular close, stop-loss, take-profit) and the ticket of the
//! position's opening order. Bits 63 and 62 travel in the clear; the low 62 bits go through an 8-round
//! Feistel network whose round function is a key-dependent permutation of 31 bits. The layout and the
//! cipher are bit-exact with the magics HedgeTerminal places, so accounts it managed replay unchanged.
//! Round functions are applied through byte lookup tables built once per process.

use hedge_domain::{Magic, OrderTicket};
use std::sync::OnceLock;

/// Highest ticket that fits the 58-bit ticket field.
pub const MAX_TICKET: u64 = (1 << 58) - 1;
const LOW62: u64 = (1 << 62) - 1;
const HALF: u64 = (1 << 31) - 1;
const BIT63: u64 = 1 << 63;
const BIT62: u64 = 1 << 62;
const TICKET_MASK: u64 = 0x03FF_FFFF_FFFF_FFFF;

/// What a link magic asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// A regular close (service byte 0x80).
    Market,
    /// A stop-loss order, or a close marked as stop-loss (0xC0).
    StopLoss,
    /// A close marked as take-profit (0xA0).
    TakeProfit,
}

impl LinkKind {
    /// The service byte placed in bits 56..63 before encryption.
    pub const fn type_byte(self) -> u8 {
        match self {
            LinkKind::Market => 0x80,
            LinkKind::StopLoss => 0xC0,
            LinkKind::TakeProfit => 0xA0,
        }
    }
}

/// A decoded link: the service byte (top 6 bits of the plain value) and the referenced ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Link {
    pub service: u8,
    pub ticket: OrderTicket,
}

impl Link {
    /// The kind named by the service byte; `None` for service bytes no encoder produces (a foreign
    /// magic, or a ticket that spilled into the service bits). Such a link still references a ticket
    /// and behaves as a regular close.
    pub fn kind(self) -> Option<LinkKind> {
        match self.service {
            0x80 => Some(LinkKind::Market),
            0xC0 => Some(LinkKind::StopLoss),
            0xA0 => Some(LinkKind::TakeProfit),
            _ => None,
        }
    }

    pub fn is_stop_loss(self) -> bool {
        self.service == 0xC0
    }

    pub fn is_take_profit(self) -> bool {
        self.service == 0xA0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("order ticket {0} does not fit the 58-bit link field (maximum {MAX_TICKET})")]
    TicketTooLarge(u64),
}

/// Encodes a link to `ticket` of the given kind.
pub fn encode(ticket: OrderTicket, kind: LinkKind) -> Result<Magic, CodecError> {
    let t = ticket.get();
    if t > MAX_TICKET {
        return Err(CodecError::TicketTooLarge(t));
    }
    Ok(Magic(encode_raw(t, kind)))
}

/// The original's encoder without the range check: a ticket ≥ 2^58 spills into the service bits.
/// Only for reproducing the reference edge cases; use [`encode`].
pub fn encode_raw(ticket: u64, kind: LinkKind) -> u64 {
    let v = ((kind.type_byte() as u64) << 56) | ticket;
    let c = crypt(v & LOW62);
    c | BIT63 | (v & BIT62)
}

/// Decodes a magic. `None` when bit 63 is clear (not a link). Any magic with bit 63 set decodes to
/// some ticket; whether it links to anything depends on the active positions.
pub fn decode(magic: Magic) -> Option<Link> {
    let m = magic.get();
    if m & BIT63 == 0 {
        return None;
    }
    let u = decrypt(m & LOW62) | (m & (BIT63 | BIT62));
    Some(Link {
        service: ((u & 0xFC00_0000_0000_0000) >> 56) as u8,
        ticket: OrderTicket(u & TICKET_MASK),
    })
}

/// Whether a magic is a link at all (bit 63 set), without decoding it.
pub const fn is_link(magic: Magic) -> bool {
    magic.0 & BIT63 != 0
}

/// The original's pseudo-random generator: Knuth's 64-bit LCG, reduced modulo 2^64 − 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lcg(u64);

impl Lcg {
    const A: u64 = 6364136223846793005;
    const C: u64 = 1442695040888963407;

    fn next(&mut self) -> u64 {
        let x = Self::A.wrapping_mul(self.0).wrapping_add(Self::C);
        self.0 = if x == u64::MAX { 0 } else { x };
        self.0
    }
}

/// The 8 round keys: successive outputs of a generator seeded with 0.
pub(crate) fn round_keys() -> [u64; 8] {
    let mut g = Lcg(0);
    let mut keys = [0u64; 8];
    for k in &mut keys {
        *k = g.next();
    }
    keys
}

/// The bit permutation of each round: output bit `i` is input bit `maps[r][i]`.
pub(crate) fn round_maps() -> [[u8; 31]; 8] {
    let keys = round_keys();
    let mut maps = [[0u8; 31]; 8];
    for (r, map) in maps.iter_mut().enumerate() {
        let mut g = Lcg(keys[r]);
        // The original inserts all 62 indices, but only the first 31 can ever be drawn.
        let mut pool: Vec<u8> = (0..62).collect();
        for (slot, i) in (0..31u64).rev().enumerate() {
            let idx = (g.next() % (i + 1)) as usize;
            map[slot] = pool.remove(idx);
        }
    }
    maps
}

/// Per round, per input byte position (4 bytes cover 31 bits), the output bits contributed by that byte.
struct Tables([[[u32; 256]; 4]; 8]);

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Box<Tables>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let maps = round_maps();
        let mut t = Box::new(Tables([[[0u32; 256]; 4]; 8]));
        for (r, map) in maps.iter().enumerate() {
            for (out_bit, &in_bit) in map.iter().enumerate() {
                let byte = (in_bit / 8) as usize;
                let bit_in_byte = in_bit % 8;
                for value in 0..256usize {
                    if value >> bit_in_byte & 1 == 1 {
                        t.0[r][byte][value] |= 1 << out_bit;
                    }
                }
            }
        }
        t
    })
}

#[inline]
fn round(t: &Tables, r: usize, x: u64) -> u64 {
    let x = x as u32;
    let tr = &t.0[r];
    (tr[0][(x & 0xFF) as usize]
        | tr[1][(x >> 8 & 0xFF) as usize]
        | tr[2][(x >> 16 & 0xFF) as usize]
        | tr[3][(x >> 24 & 0x7F) as usize]) as u64
}

/// Encrypts a 62-bit block.
pub(crate) fn crypt(block: u64) -> u64 {
    let t = tables();
    let (mut l, mut r) = (block >> 31 & HALF, block & HALF);
    for k in 0..8 {
        let nl = r ^ round(t, k, l);
        r = l;
        l = nl;
    }
    (l << 31) | r
}

/// Decrypts a 62-bit block.
pub(crate) fn decrypt(block: u64) -> u64 {
    let t = tables();
    let (mut l, mut r) = (block >> 31 & HALF, block & HALF);
    for k in (0..8).rev() {
        let nr = l ^ round(t, k, r);
        l = r;
        r = nr;
    }
    (l << 31) | r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_keys_match_the_reference() {
        assert_eq!(
            round_keys(),
            [
                1442695040888963407,
                1876011003808476466,
                11166244414315200793,
                7401132627792533940,
                7076646890315895283,
                10346034117385188870,
                1459328389850446429,
                6566661184467396264
            ]
        );
    }

    #[test]
    fn round_maps_match_the_reference() {
        let maps = round_maps();
        let expected: [[u8; 31]; 8] = [
            [
                15, 13, 22, 30, 6, 18, 17, 29, 20, 21, 8, 3, 14, 19, 12, 28, 5, 11, 25, 27, 16, 23,
                2, 26, 1, 24, 9, 10, 7, 4, 0,
            ],
            [
                27, 0, 22, 19, 14, 21, 7, 24, 23, 26, 8, 18, 2, 15, 10, 4, 29, 20, 9, 13, 1, 28,
                12, 6, 16, 11, 5, 25, 30, 3, 17,
            ],
            [
                11, 14, 9, 16, 6, 18, 4, 1, 28, 27, 23, 21, 30, 8, 17, 19, 12, 25, 15, 10, 22, 24,
                0, 3, 2, 20, 29, 7, 26, 13, 5,
            ],
            [
                12, 0, 16, 1, 14, 27, 24, 6, 7, 29, 4, 2, 30, 19, 18, 10, 20, 8, 5, 23, 3, 9, 28,
                21, 15, 17, 25, 11, 26, 13, 22,
            ],
            [
                29, 19, 14, 7, 6, 25, 27, 3, 18, 4, 1, 12, 5, 2, 11, 10, 13, 21, 30, 22, 16, 15,
                28, 17, 20, 26, 24, 23, 8, 9, 0,
            ],
            [
                29, 24, 21, 23, 28, 14, 3, 7, 16, 0, 15, 20, 11, 9, 8, 12, 4, 25, 10, 18, 30, 26,
                19, 22, 27, 5, 13, 6, 1, 2, 17,
            ],
            [
                28, 11, 17, 1, 15, 30, 29, 6, 2, 21, 19, 20, 16, 18, 25, 24, 12, 5, 0, 10, 14, 4,
                8, 23, 22, 27, 3, 9, 7, 26, 13,
            ],
            [
                4, 25, 14, 0, 1, 22, 17, 21, 10, 20, 11, 27, 9, 12, 30, 16, 15, 19, 5, 24, 13, 8,
                23, 2, 18, 28, 7, 3, 26, 6, 29,
            ],
        ];
        assert_eq!(maps, expected);
    }

    #[test]
    fn raw_check_value() {
        assert_eq!(crypt(1), 0x0200059C08600081);
        assert_eq!(crypt(0), 0);
    }

    use LinkKind::{Market as M, StopLoss as S, TakeProfit as T};

    const VECTORS: &[(u64, LinkKind, u64)] = &[
        (0, M, 9223372036854775808),
        (0, S, 13835058055282163712),
        (0, T, 11705556581956458224),
        (1, M, 9367493392644178049),
        (1, S, 13979179411071565953),
        (1, T, 11561435329250465393),
        (2, M, 11892883229423700107),
        (2, S, 16504569247851088011),
        (2, T, 9763381747340287611),
        (3, M, 12037004516493625354),
        (100, M, 10663014565322403258),
        (100, S, 15274700583749791162),
        (100, T, 12792719871521307466),
        (2680623, M, 13662543986577383266),
        (2680623, S, 18274230005004771170),
        (2680623, T, 11522854298653821330),
        (26287309, M, 9421077692901340990),
        (101162513, M, 9556309687382699578),
        (101162513, S, 14167995705810087482),
        (101162513, T, 12028174205340219594),
        (1000000000, M, 12296789230322608879),
        (1009980430, M, 10904769312034355067),
        (1009980430, S, 15516455330461742971),
        (1009980430, T, 13053675104425435531),
        (4294967295, M, 11495680488953082586),
        (4294967296, M, 9767819855706367112),
        (9999999999, M, 13131880550860351499),
        (10789965471, M, 13232196510589545410),
        (10789965471, S, 17843882529016933314),
        (10789965471, T, 10795208776477211954),
        (13400775716, M, 12788867984816531120),
        (13400775716, S, 17400554003243919024),
        (13400775716, T, 10595089886356369472),
        (123456789012, M, 13285019313039542750),
        (144115188075855872, M, 9253776956699714630),
        (288230376151711743, M, 12569002415966294870),
        (288230376151711743, S, 17180688434393682774),
        (288230376151711743, T, 10096063949934069158),
    ];

    #[test]
    fn published_vectors_encode_and_decode() {
        for &(ticket, kind, magic) in VECTORS {
            assert_eq!(
                encode(OrderTicket(ticket), kind).unwrap(),
                Magic(magic),
                "{ticket} {kind:?}"
            );
            let link = decode(Magic(magic)).unwrap();
            assert_eq!(link.ticket, OrderTicket(ticket));
            assert_eq!(link.service, kind.type_byte());
            assert_eq!(link.kind(), Some(kind));
        }
    }

    #[test]
    fn out_of_range_tickets_are_refused_and_reproduce_the_original_spill() {
        assert_eq!(
            encode(OrderTicket(1 << 58), M),
            Err(CodecError::TicketTooLarge(1 << 58))
        );
        let cases: &[(u64, LinkKind, u64, u8, u64)] = &[
            (1 << 58, M, 13480189011268666595, 0x84, 0),
            (
                (1 << 59) - 1,
                M,
                10771855384575055797,
                0x84,
                288230376151711743,
            ),
            (
                (1 << 59) - 1,
                S,
                15383541403002443701,
                0xC4,
                288230376151711743,
            ),
            (
                (1 << 59) - 1,
                T,
                13190811138821554501,
                0xA4,
                288230376151711743,
            ),
            (1 << 60, M, 9255052987152237120, 0x90, 0),
            (1 << 61, M, 11705556581956458224, 0xA0, 0),
        ];
        for &(ticket, kind, magic, service, decoded) in cases {
            assert_eq!(encode_raw(ticket, kind), magic);
            let link = decode(Magic(magic)).unwrap();
            assert_eq!((link.service, link.ticket.get()), (service, decoded));
        }
        assert!(!decode(Magic(15383541403002443701)).unwrap().is_stop_loss());
    }

    #[test]
    fn arbitrary_magics() {
        for m in [0u64, 123456, (1 << 63) - 1] {
            assert_eq!(decode(Magic(m)), None);
            assert!(!is_link(Magic(m)));
        }
        let l = decode(Magic(1 << 63)).unwrap();
        assert_eq!((l.service, l.ticket.get()), (0x80, 0));
        let l = decode(Magic((1 << 63) + 1)).unwrap();
        assert_eq!((l.service, l.ticket.get()), (0x88, 5773553417880321));
        assert_eq!(l.kind(), None);
        let l = decode(Magic(u64::MAX)).unwrap();
        assert_eq!((l.service, l.ticket.get()), (0xC0, 2147483647));
        assert!(l.is_stop_loss());
    }

    proptest::proptest! {
        #[test]
        fn round_trip_and_linearity(a in 0u64..(1 << 62), b in 0u64..(1 << 62), t in 0u64..=MAX_TICKET) {
            proptest::prop_assert_eq!(decrypt(crypt(a)), a);
            proptest::prop_assert_eq!(crypt(a ^ b), crypt(a) ^ crypt(b));
            for kind in [M, S, T] {
                let link = decode(encode(OrderTicket(t), kind).unwrap()).unwrap();
                proptest::prop_assert_eq!(link.ticket, OrderTicket(t));
                proptest::prop_assert_eq!(link.kind(), Some(kind));
            }
        }
    }
}
