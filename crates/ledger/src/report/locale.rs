//! The words of MT5 reports in the terminal's UI languages.
//!
//! Column headers are only hints: sections are recognized by the shape of their rows and columns
//! fall back to the terminal's fixed layout, so a language missing here still imports. The words
//! help when a column is added, hidden or moved. Cell values (`buy`, `in`, `filled`) are written in
//! English by the terminals we have seen; the localized forms are accepted too.

use hedge_domain::{DealEntry, Side};

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Time,
    OpenTime,
    CloseTime,
    Deal,
    Order,
    Position,
    Symbol,
    Type,
    Direction,
    Volume,
    Price,
    ClosePrice,
    MarketPrice,
    StopLoss,
    TakeProfit,
    Commission,
    Fee,
    Swap,
    Profit,
    Balance,
    Comment,
    State,
}

/// Header words per role (lower case), in English, French, German, Spanish, Portuguese, Italian,
/// Russian, Chinese, Japanese, Turkish and Arabic.
const WORDS: &[(Role, &[&str])] = &[
    (
        Role::OpenTime,
        &[
            "open time",
            "heure d'ouverture",
            "heure ouverture",
            "eröffnungszeit",
            "öffnungszeit",
            "hora de apertura",
            "tiempo de apertura",
            "horário de abertura",
            "hora de abertura",
            "tempo di apertura",
            "ora di apertura",
            "orario di apertura",
            "время открытия",
            "开仓时间",
            "開倉時間",
            "建仓时间",
            "オープン時間",
            "注文時間",
            "発注時間",
            "açılış zamanı",
            "açılış saati",
            "وقت الفتح",
            "وقت الافتتاح",
        ],
    ),
    (
        Role::Time,
        &[
            "time",
            "heure",
            "date",
            "zeit",
            "datum",
            "hora",
            "tiempo",
            "fecha",
            "horário",
            "tempo",
            "ora",
            "orario",
            "время",
            "时间",
            "時間",
            "時刻",
            "日時",
            "zaman",
            "saat",
            "tarih",
            "الوقت",
            "وقت",
            "التاريخ",
        ],
    ),
    (
        Role::Deal,
        &[
            "deal",
            "deals",
            "transaction",
            "affaire",
            "geschäft",
            "trade",
            "abschluss",
            "operación",
            "transacción",
            "negociación",
            "negócio",
            "transação",
            "operação",
            "operazione",
            "affare",
            "transazione",
            "сделка",
            "交易",
            "成交",
            "成交单",
            "約定",
            "取引",
            "işlem",
            "anlaşma",
            "صفقة",
            "الصفقة",
        ],
    ),
    (
        Role::Order,
        &[
            "order",
            "ordre",
            "auftrag",
            "orden",
            "ordem",
            "ordine",
            "ордер",
            "订单",
            "訂單",
            "注文",
            "emir",
            "أمر",
            "الأمر",
        ],
    ),
    (
        Role::Position,
        &[
            "position",
            "posición",
            "posicion",
            "posição",
            "posizione",
            "позиция",
            "持仓",
            "仓位",
            "頭寸",
            "ポジション",
            "pozisyon",
            "مركز",
            "المركز",
            "صفقة مفتوحة",
        ],
    ),
    (
        Role::Symbol,
        &[
            "symbol",
            "symbole",
            "símbolo",
            "simbolo",
            "ativo",
            "символ",
            "交易品种",
            "品种",
            "商品",
            "銘柄",
            "シンボル",
            "通貨ペア",
            "sembol",
            "enstrüman",
            "الرمز",
            "رمز",
        ],
    ),
    (
        Role::Type,
        &[
            "type",
            "typ",
            "tipo",
            "тип",
            "类型",
            "類型",
            "タイプ",
            "種類",
            "種別",
            "tip",
            "tür",
            "النوع",
            "نوع",
        ],
    ),
    (
        Role::Direction,
        &[
            "direction",
            "richtung",
            "dirección",
            "direção",
            "direcao",
            "direzione",
            "направление",
            "方向",
            "売買",
            "yön",
            "yon",
            "الاتجاه",
            "اتجاه",
        ],
    ),
    (
        Role::Volume,
        &[
            "volume",
            "volumen",
            "объем",
            "объём",
            "交易量",
            "成交量",
            "数量",
            "手数",
            "取引数量",
            "ロット",
            "hacim",
            "lot",
            "الحجم",
            "حجم",
        ],
    ),
    (
        Role::MarketPrice,
        &[
            "market price",
            "prix du marché",
            "prix de marché",
            "marktpreis",
            "precio de mercado",
            "preço de mercado",
            "prezzo di mercato",
            "рыночная цена",
            "市场价格",
            "市场价",
            "市価",
            "現在価格",
            "市場価格",
            "piyasa fiyatı",
            "سعر السوق",
        ],
    ),
    (
        Role::Price,
        &[
            "price",
            "prix",
            "preis",
            "kurs",
            "precio",
            "preço",
            "prezzo",
            "цена",
            "价格",
            "價格",
            "価格",
            "レート",
            "fiyat",
            "السعر",
            "سعر",
        ],
    ),
    (
        Role::StopLoss,
        &[
            "s / l",
            "s/l",
            "sl",
            "stop loss",
            "стоп лосс",
            "止损",
            "損切り",
        ],
    ),
    (
        Role::TakeProfit,
        &[
            "t / p",
            "t/p",
            "tp",
            "take profit",
            "тейк профит",
            "止盈",
            "利食い",
        ],
    ),
    (
        Role::Commission,
        &[
            "commission",
            "kommission",
            "provision",
            "comisión",
            "comissão",
            "commissione",
            "комиссия",
            "手续费",
            "佣金",
            "手数料",
            "komisyon",
            "العمولة",
            "عمولة",
        ],
    ),
    (
        Role::Fee,
        &[
            "fee",
            "frais",
            "gebühr",
            "gebühren",
            "tarifa",
            "cargo",
            "taxa",
            "tassa",
            "spese",
            "сбор",
            "费用",
            "手續費",
            "料金",
            "ücret",
            "الرسوم",
            "رسوم",
        ],
    ),
    (
        Role::Swap,
        &[
            "swap",
            "swaps",
            "своп",
            "库存费",
            "隔夜利息",
            "过夜费",
            "スワップ",
            "سواب",
            "المبادلة",
        ],
    ),
    (
        Role::Profit,
        &[
            "profit",
            "bénéfice",
            "gewinn",
            "beneficio",
            "ganancia",
            "lucro",
            "profitto",
            "прибыль",
            "利润",
            "盈利",
            "盈亏",
            "損益",
            "利益",
            "kâr",
            "kar",
            "kâr/zarar",
            "الربح",
            "ربح",
        ],
    ),
    (
        Role::Balance,
        &[
            "balance",
            "solde",
            "kontostand",
            "saldo",
            "bilancio",
            "баланс",
            "结余",
            "余额",
            "残高",
            "bakiye",
            "الرصيد",
            "رصيد",
        ],
    ),
    (
        Role::Comment,
        &[
            "comment",
            "commentaire",
            "kommentar",
            "comentario",
            "comentário",
            "commento",
            "комментарий",
            "注释",
            "备注",
            "註釋",
            "コメント",
            "yorum",
            "açıklama",
            "تعليق",
            "التعليق",
        ],
    ),
    (
        Role::State,
        &[
            "state",
            "status",
            "état",
            "etat",
            "zustand",
            "estado",
            "stato",
            "состояние",
            "状态",
            "狀態",
            "状態",
            "ステータス",
            "durum",
            "الحالة",
            "حالة",
        ],
    ),
];

/// Normalizes a header or value: lower case, single spaces, no trailing colon.
pub fn normalize(text: &str) -> String {
    let lower = text.trim().trim_end_matches([':', '：']).to_lowercase();
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The roles a header text can stand for (a second "Time" is the close time, a second "Price" the
/// close price: the caller decides by order).
pub fn roles_of(header: &str) -> Vec<Role> {
    let n = normalize(header);
    let mut out = Vec::new();
    for (role, words) in WORDS {
        if words.contains(&n.as_str()) {
            out.push(*role);
            match role {
                Role::Time => out.extend([Role::OpenTime, Role::CloseTime]),
                Role::OpenTime => out.push(Role::Time),
                Role::Price => out.push(Role::ClosePrice),
                _ => {}
            }
        }
    }
    out
}

/// A deal direction, in English or a few translations.
pub fn parse_entry(s: &str) -> Option<DealEntry> {
    let t: String = s
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Some(match t.as_str() {
        "in" | "entrée" | "entree" | "вход" | "ein" | "entrada" | "入" | "进" | "イン"
        | "giriş" | "دخول" => DealEntry::In,
        "out" | "sortie" | "выход" | "aus" | "salida" | "saída" | "uscita" | "出" | "アウト"
        | "çıkış" | "خروج" => DealEntry::Out,
        "in/out"
        | "inout"
        | "entrée/sortie"
        | "разворот"
        | "вход/выход"
        | "ein/aus"
        | "entrada/salida"
        | "entrada/saída"
        | "入/出"
        | "イン/アウト"
        | "giriş/çıkış" => DealEntry::InOut,
        "outby" | "sortiepar" | "закрытиевстречной" | "встречное" => {
            DealEntry::OutBy
        }
        _ => return None,
    })
}

/// The side of a deal or position type (`buy`, `sell`, `buy limit`, ...).
pub fn parse_side(s: &str) -> Option<Side> {
    let t = s.trim().to_lowercase();
    let first = t.split_whitespace().next().unwrap_or("");
    match first {
        "buy" | "achat" | "покупка" | "kauf" | "compra" | "acquisto" | "买入" | "買い" | "alış"
        | "al" | "شراء" => Some(Side::Buy),
        "sell" | "vente" | "продажа" | "verkauf" | "venta" | "venda" | "vendita" | "卖出"
        | "売り" | "satış" | "sat" | "بيع" => Some(Side::Sell),
        _ => None,
    }
}

/// Words of the account line that name the margin mode.
pub const HEDGING_WORDS: &[&str] = &[
    "hedge",
    "hedging",
    "couverture",
    "absicherung",
    "cobertura",
    "copertura",
    "хедж",
    "хеджинг",
    "хеджирование",
    "对冲",
    "锁仓",
    "ヘッジ",
    "両建て",
    "التحوط",
    "تحوط",
];
pub const NETTING_WORDS: &[&str] = &[
    "netting",
    "compensation",
    "неттинг",
    "净额",
    "净额结算",
    "ネッティング",
    "المقاصة",
    "مقاصة",
];
pub const EXCHANGE_WORDS: &[&str] = &["exchange", "биржевой", "交易所", "取引所", "بورصة"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_in_every_language() {
        for h in [
            "Time",
            "Heure",
            "Zeit",
            "Hora",
            "Horário",
            "Ora",
            "Время",
            "时间",
            "時間",
            "Zaman",
            "الوقت",
        ] {
            assert!(roles_of(h).contains(&Role::Time), "{h}");
        }
        for h in [
            "Direction",
            "Richtung",
            "Dirección",
            "Direção",
            "Direzione",
            "Направление",
            "方向",
            "Yön",
            "الاتجاه",
        ] {
            assert_eq!(roles_of(h), vec![Role::Direction], "{h}");
        }
        assert_eq!(roles_of("Price"), vec![Role::Price, Role::ClosePrice]);
        assert_eq!(roles_of("Market Price"), vec![Role::MarketPrice]);
        assert!(roles_of("Balance:").contains(&Role::Balance));
        assert_eq!(parse_entry("in / out"), Some(DealEntry::InOut));
        assert_eq!(parse_side("sell stop"), Some(Side::Sell));
    }
}
