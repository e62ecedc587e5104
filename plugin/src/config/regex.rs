//! A small regex engine for `match: {"regex": ...}`: the syntax, limits and error messages of
//! `regex-lite` 0.1 (RE2-like, ASCII-only Perl classes and case folding, no look-around or
//! backreferences), matched by a Pike VM in `O(pattern * haystack)` time.
//!
//! The parser is a port of `regex-lite`'s; the matcher only answers `is_match`, so it keeps no
//! capture slots and ignores greediness. `regex-lite` with its captures, iterators and
//! replacement API cost about 60 KB of the plugin's wasm, this about a fifth of that.

use std::fmt;

/// A compiled regex.
#[derive(Clone)]
pub struct Regex {
    pattern: String,
    prog: Vec<Inst>,
    /// Character ranges of the `Inst::Ranges` instructions.
    ranges: Vec<(char, char)>,
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Regex").field(&self.pattern).finish()
    }
}

/// Why a pattern was rejected (`regex-lite`'s wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub &'static str);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

const NEST_LIMIT: u32 = 50;
/// `regex-lite`'s default NFA size limit (10 MiB), counted as it counts it on 64-bit targets.
const SIZE_LIMIT: usize = 10 << 20;

#[derive(Clone, Copy, Debug)]
enum Inst {
    /// Consume one char in `ranges[start..end]`, go on to the next instruction.
    Ranges(u32, u32),
    Split(u32, u32),
    Jmp(u32),
    Look(Look),
    Match,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Look {
    Start,
    End,
    StartLF,
    EndLF,
    StartCRLF,
    EndCRLF,
    Word,
    WordNegate,
    WordStart,
    WordEnd,
    WordStartHalf,
    WordEndHalf,
}

impl Look {
    fn is_match(self, h: &[u8], at: usize) -> bool {
        let before = at > 0 && is_word_byte(h[at - 1]);
        let after = at < h.len() && is_word_byte(h[at]);
        match self {
            Look::Start => at == 0,
            Look::End => at == h.len(),
            Look::StartLF => at == 0 || h[at - 1] == b'\n',
            Look::EndLF => at == h.len() || h[at] == b'\n',
            Look::StartCRLF => {
                at == 0
                    || h[at - 1] == b'\n'
                    || (h[at - 1] == b'\r' && (at >= h.len() || h[at] != b'\n'))
            }
            Look::EndCRLF => {
                at == h.len()
                    || h[at] == b'\r'
                    || (h[at] == b'\n' && (at == 0 || h[at - 1] != b'\r'))
            }
            Look::Word => before != after,
            Look::WordNegate => before == after,
            Look::WordStart => !before && after,
            Look::WordEnd => before && !after,
            Look::WordStartHalf => !before,
            Look::WordEndHalf => !after,
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Regex {
    pub fn new(pattern: &str) -> Result<Regex, Error> {
        let hir = Parser::new(pattern).parse()?;
        let mut re = Regex {
            pattern: pattern.to_string(),
            prog: Vec::new(),
            ranges: Vec::new(),
        };
        re.compile(&hir)?;
        re.push(Inst::Match)?;
        Ok(re)
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the regex matches somewhere in `haystack`.
    pub fn is_match(&self, haystack: &str) -> bool {
        let h = haystack.as_bytes();
        let anchored = matches!(self.prog.first(), Some(Inst::Look(Look::Start)));
        let mut clist = Threads::new(self.prog.len());
        let mut nlist = Threads::new(self.prog.len());
        let mut stack = Vec::new();
        let mut at = 0;
        loop {
            if (at == 0 || !anchored) && self.add(&mut clist, &mut stack, 0, h, at) {
                return true;
            }
            let Some(ch) = haystack[at..].chars().next() else {
                return false;
            };
            if clist.dense.is_empty() && anchored {
                return false;
            }
            let next = at + ch.len_utf8();
            for i in 0..clist.dense.len() {
                let pc = clist.dense[i];
                if let Inst::Ranges(s, e) = self.prog[pc as usize] {
                    let hit = self.ranges[s as usize..e as usize]
                        .iter()
                        .any(|&(lo, hi)| lo <= ch && ch <= hi);
                    if hit && self.add(&mut nlist, &mut stack, pc + 1, h, next) {
                        return true;
                    }
                }
            }
            std::mem::swap(&mut clist, &mut nlist);
            nlist.clear();
            at = next;
        }
    }

    /// Adds the epsilon closure of `pc` at `at`; true if it reaches `Match`.
    fn add(&self, list: &mut Threads, stack: &mut Vec<u32>, pc: u32, h: &[u8], at: usize) -> bool {
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if !list.insert(pc) {
                continue;
            }
            match self.prog[pc as usize] {
                Inst::Ranges(..) => {}
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Inst::Jmp(t) => stack.push(t),
                Inst::Look(l) => {
                    if l.is_match(h, at) {
                        stack.push(pc + 1);
                    }
                }
                Inst::Match => return true,
            }
        }
        false
    }

    fn push(&mut self, inst: Inst) -> Result<u32, Error> {
        if self.prog.len() * 32 + self.ranges.len() * 8 > SIZE_LIMIT {
            return Err(Error("compiled regex exceeded size limit"));
        }
        self.prog.push(inst);
        Ok(self.prog.len() as u32 - 1)
    }

    fn pc(&self) -> u32 {
        self.prog.len() as u32
    }

    fn compile(&mut self, hir: &Hir) -> Result<(), Error> {
        match hir {
            // A no-op, so that repeating an empty expression still counts against the limit.
            Hir::Empty => {
                let pc = self.pc();
                self.push(Inst::Jmp(pc + 1))?;
            }
            Hir::Char(c) => self.class(&[(*c, *c)])?,
            Hir::Class(ranges) => self.class(ranges)?,
            Hir::Look(l) => {
                self.push(Inst::Look(*l))?;
            }
            Hir::Group(sub) => self.compile(sub)?,
            Hir::Concat(subs) => {
                for s in subs {
                    self.compile(s)?;
                }
            }
            Hir::Alt(subs) => {
                let mut jumps = Vec::new();
                for (i, s) in subs.iter().enumerate() {
                    if i + 1 == subs.len() {
                        self.compile(s)?;
                    } else {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.compile(s)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        self.prog[split as usize] = Inst::Split(split + 1, self.pc());
                    }
                }
                let end = self.pc();
                for j in jumps {
                    self.prog[j as usize] = Inst::Jmp(end);
                }
            }
            Hir::Rep(min, max, sub) => {
                let copies = match max {
                    None => min.saturating_sub(1),
                    Some(_) => *min,
                };
                for _ in 0..copies {
                    self.compile(sub)?;
                }
                match max {
                    // x+ as `L: x; split L, next`; x* as `L: split L+1, end; x; jmp L`.
                    None if *min > 0 => {
                        let start = self.pc();
                        self.compile(sub)?;
                        let pc = self.pc();
                        self.push(Inst::Split(start, pc + 1))?;
                    }
                    None => {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.compile(sub)?;
                        self.push(Inst::Jmp(split))?;
                        self.prog[split as usize] = Inst::Split(split + 1, self.pc());
                    }
                    // Each optional copy may skip to the end.
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.push(Inst::Split(0, 0))?);
                            self.compile(sub)?;
                        }
                        let end = self.pc();
                        for s in splits {
                            self.prog[s as usize] = Inst::Split(s + 1, end);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn class(&mut self, ranges: &[(char, char)]) -> Result<(), Error> {
        let start = self.ranges.len() as u32;
        self.ranges.extend_from_slice(ranges);
        self.push(Inst::Ranges(start, self.ranges.len() as u32))?;
        Ok(())
    }
}

/// Thread list of the Pike VM: a set of instruction indexes in insertion order.
struct Threads {
    dense: Vec<u32>,
    /// `stamp[pc] == gen` iff `pc` is in the set.
    stamp: Vec<u32>,
    gen: u32,
}

impl Threads {
    fn new(n: usize) -> Threads {
        Threads {
            dense: Vec::new(),
            stamp: vec![0; n],
            gen: 1,
        }
    }
    fn insert(&mut self, pc: u32) -> bool {
        let s = &mut self.stamp[pc as usize];
        if *s == self.gen {
            return false;
        }
        *s = self.gen;
        self.dense.push(pc);
        true
    }
    fn clear(&mut self) {
        self.dense.clear();
        self.gen += 1;
    }
}

/// The parsed pattern, shaped as `regex-lite` shapes it (which its nesting limit counts).
enum Hir {
    Empty,
    Char(char),
    /// Sorted, non-overlapping, non-adjacent ranges; empty = matches nothing.
    Class(Vec<(char, char)>),
    Look(Look),
    Rep(u32, Option<u32>, Box<Hir>),
    Group(Box<Hir>),
    Concat(Vec<Hir>),
    Alt(Vec<Hir>),
}

impl Hir {
    fn rep(min: u32, max: Option<u32>, sub: Hir) -> Hir {
        match (min, max) {
            (0, Some(0)) => Hir::Empty,
            (1, Some(1)) => sub,
            _ => Hir::Rep(min, max, Box::new(sub)),
        }
    }
    fn concat(mut subs: Vec<Hir>) -> Hir {
        match subs.len() {
            0 => Hir::Empty,
            1 => subs.pop().unwrap_or(Hir::Empty),
            _ => Hir::Concat(subs),
        }
    }
    fn alt(mut subs: Vec<Hir>) -> Hir {
        match subs.len() {
            0 => Hir::Class(Vec::new()),
            1 => subs.pop().unwrap_or(Hir::Empty),
            _ => Hir::Alt(subs),
        }
    }
    fn class(mut ranges: Vec<(char, char)>) -> Hir {
        canonicalize(&mut ranges);
        Hir::Class(ranges)
    }
    fn check_nesting(&self, depth: u32) -> Result<(), Error> {
        if depth > NEST_LIMIT {
            return Err(Error(ERR_TOO_MUCH_NESTING));
        }
        match self {
            Hir::Rep(_, _, sub) | Hir::Group(sub) => sub.check_nesting(depth + 1),
            Hir::Concat(subs) | Hir::Alt(subs) => {
                subs.iter().try_for_each(|s| s.check_nesting(depth + 1))
            }
            _ => Ok(()),
        }
    }
}

fn next_char(c: char) -> char {
    match c {
        '\u{D7FF}' => '\u{E000}',
        _ => char::from_u32(c as u32 + 1).unwrap_or(char::MAX),
    }
}

fn prev_char(c: char) -> char {
    match c {
        '\u{E000}' => '\u{D7FF}',
        _ => char::from_u32((c as u32).saturating_sub(1)).unwrap_or('\0'),
    }
}

/// Sort and merge overlapping or adjacent ranges.
fn canonicalize(ranges: &mut Vec<(char, char)>) {
    ranges.sort_unstable();
    let mut out: Vec<(char, char)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match out.last_mut() {
            Some(last) if s as u32 <= (last.1 as u32).saturating_add(1) => {
                last.1 = last.1.max(e);
            }
            _ => out.push((s, e)),
        }
    }
    *ranges = out;
}

fn negate(ranges: &mut Vec<(char, char)>) {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    let mut next = Some('\0');
    for &(s, e) in ranges.iter() {
        if let Some(n) = next {
            if n < s {
                out.push((n, prev_char(s)));
            }
        }
        next = (e < char::MAX).then(|| next_char(e));
    }
    if let Some(n) = next {
        out.push((n, char::MAX));
    }
    *ranges = out;
}

/// Add the other ASCII case of every letter range (then canonicalize).
fn ascii_case_fold(ranges: &mut Vec<(char, char)>) {
    for i in 0..ranges.len() {
        if let Some(f) = fold_range(ranges[i]) {
            ranges.push(f);
        }
    }
    canonicalize(ranges);
}

fn fold_range((s, e): (char, char)) -> Option<(char, char)> {
    let shift = |lo: char, hi: char, up: bool| {
        let (s, e) = (s.max(lo) as u8, e.min(hi) as u8);
        let (s, e) = if up {
            (s - 32, e - 32)
        } else {
            (s + 32, e + 32)
        };
        (s as char, e as char)
    };
    if s.max('a') <= e.min('z') {
        Some(shift('a', 'z', true))
    } else if s.max('A') <= e.min('Z') {
        Some(shift('A', 'Z', false))
    } else {
        None
    }
}

fn posix_class(name: &str) -> Option<Vec<(char, char)>> {
    let r: &[(u8, u8)] = match name {
        "alnum" => &[(b'0', b'9'), (b'A', b'Z'), (b'a', b'z')],
        "alpha" => &[(b'A', b'Z'), (b'a', b'z')],
        "ascii" => &[(0, 0x7F)],
        "blank" => &[(b'\t', b'\t'), (b' ', b' ')],
        "cntrl" => &[(0, 0x1F), (0x7F, 0x7F)],
        "digit" => &[(b'0', b'9')],
        "graph" => &[(b'!', b'~')],
        "lower" => &[(b'a', b'z')],
        "print" => &[(b' ', b'~')],
        "punct" => &[(b'!', b'/'), (b':', b'@'), (b'[', b'`'), (b'{', b'~')],
        "space" => &[(b'\t', b'\r'), (b' ', b' ')],
        "upper" => &[(b'A', b'Z')],
        "word" => &[(b'0', b'9'), (b'A', b'Z'), (b'_', b'_'), (b'a', b'z')],
        "xdigit" => &[(b'0', b'9'), (b'A', b'F'), (b'a', b'f')],
        _ => return None,
    };
    Some(r.iter().map(|&(s, e)| (s as char, e as char)).collect())
}

fn is_meta_character(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

fn is_escapable_character(c: char) -> bool {
    is_meta_character(c) || (c.is_ascii() && !c.is_ascii_alphanumeric() && c != '<' && c != '>')
}

fn is_capture_char(c: char, first: bool) -> bool {
    if first {
        c == '_' || c.is_alphabetic()
    } else {
        c == '_' || c == '.' || c == '[' || c == ']' || c.is_alphanumeric()
    }
}

const ERR_TOO_MUCH_NESTING: &str = "pattern has too much nesting";
const ERR_DUPLICATE_CAPTURE_NAME: &str = "duplicate capture group name";
const ERR_UNCLOSED_GROUP: &str = "found open group without closing ')'";
const ERR_UNCLOSED_GROUP_QUESTION: &str = "expected closing ')', but got end of pattern";
const ERR_UNOPENED_GROUP: &str = "found closing ')' without matching '('";
const ERR_LOOK_UNSUPPORTED: &str = "look-around is not supported";
const ERR_EMPTY_FLAGS: &str = "empty flag directive '(?)' is not allowed";
const ERR_MISSING_GROUP_NAME: &str = "expected capture group name, but got end of pattern";
const ERR_INVALID_GROUP_NAME: &str = "invalid group name";
const ERR_UNCLOSED_GROUP_NAME: &str = "expected end of capture group name, but got end of pattern";
const ERR_EMPTY_GROUP_NAME: &str = "empty capture group names are not allowed";
const ERR_FLAG_UNRECOGNIZED: &str = "unrecognized inline flag";
const ERR_FLAG_REPEATED_NEGATION: &str = "inline flag negation cannot be repeated";
const ERR_FLAG_DUPLICATE: &str = "duplicate inline flag is not allowed";
const ERR_FLAG_UNEXPECTED_EOF: &str =
    "expected ':' or ')' to end inline flags, but got end of pattern";
const ERR_FLAG_DANGLING_NEGATION: &str = "inline flags cannot end with negation directive";
const ERR_DECIMAL_NO_DIGITS: &str = "expected decimal number, but found no digits";
const ERR_DECIMAL_INVALID: &str = "got invalid decimal number";
const ERR_HEX_BRACE_INVALID_DIGIT: &str =
    "expected hexadecimal number in braces, but got non-hex digit";
const ERR_HEX_BRACE_UNEXPECTED_EOF: &str =
    "expected hexadecimal number, but saw end of pattern before closing brace";
const ERR_HEX_BRACE_EMPTY: &str = "expected hexadecimal number in braces, but got no digits";
const ERR_HEX_BRACE_INVALID: &str = "got invalid hexadecimal number in braces";
const ERR_HEX_FIXED_UNEXPECTED_EOF: &str =
    "expected fixed length hexadecimal number, but saw end of pattern first";
const ERR_HEX_FIXED_INVALID_DIGIT: &str =
    "expected fixed length hexadecimal number, but got non-hex digit";
const ERR_HEX_FIXED_INVALID: &str = "got invalid fixed length hexadecimal number";
const ERR_HEX_UNEXPECTED_EOF: &str = "expected hexadecimal number, but saw end of pattern first";
const ERR_ESCAPE_UNEXPECTED_EOF: &str =
    "saw start of escape sequence, but saw end of pattern before it finished";
const ERR_BACKREF_UNSUPPORTED: &str = "backreferences are not supported";
const ERR_UNICODE_CLASS_UNSUPPORTED: &str = "Unicode character classes are not supported";
const ERR_ESCAPE_UNRECOGNIZED: &str = "unrecognized escape sequence";
const ERR_UNCOUNTED_REP_SUB_MISSING: &str =
    "uncounted repetition operator must be applied to a sub-expression";
const ERR_COUNTED_REP_SUB_MISSING: &str =
    "counted repetition operator must be applied to a sub-expression";
const ERR_COUNTED_REP_UNCLOSED: &str = "found unclosed counted repetition operator";
const ERR_COUNTED_REP_MIN_UNCLOSED: &str =
    "found incomplete and unclosed counted repetition operator";
const ERR_COUNTED_REP_COMMA_UNCLOSED: &str =
    "found counted repetition operator with a comma that is unclosed";
const ERR_COUNTED_REP_MIN_MAX_UNCLOSED: &str =
    "found counted repetition with min and max that is unclosed";
const ERR_COUNTED_REP_INVALID: &str =
    "expected closing brace for counted repetition, but got something else";
const ERR_COUNTED_REP_INVALID_RANGE: &str =
    "found counted repetition with a min bigger than its max";
const ERR_CLASS_UNCLOSED_AFTER_ITEM: &str = "non-empty character class has no closing bracket";
const ERR_CLASS_INVALID_RANGE_ITEM: &str =
    "character class ranges must start and end with a single character";
const ERR_CLASS_INVALID_ITEM: &str = "invalid escape sequence in character class";
const ERR_CLASS_UNCLOSED_AFTER_DASH: &str =
    "non-empty character class has no closing bracket after dash";
const ERR_CLASS_UNCLOSED_AFTER_NEGATION: &str = "negated character class has no closing bracket";
const ERR_CLASS_UNCLOSED_AFTER_CLOSING: &str =
    "character class begins with literal ']' but has no closing bracket";
const ERR_CLASS_INVALID_RANGE: &str = "invalid range in character class";
const ERR_CLASS_UNCLOSED: &str = "found unclosed character class";
const ERR_CLASS_NEST_UNSUPPORTED: &str = "nested character classes are not supported";
const ERR_CLASS_INTERSECTION_UNSUPPORTED: &str = "character class intersection is not supported";
const ERR_CLASS_DIFFERENCE_UNSUPPORTED: &str = "character class difference is not supported";
const ERR_CLASS_SYMDIFFERENCE_UNSUPPORTED: &str =
    "character class symmetric difference is not supported";
const ERR_SPECIAL_WORD_BOUNDARY_UNCLOSED: &str =
    "special word boundary assertion is unclosed or has an invalid character";
const ERR_SPECIAL_WORD_BOUNDARY_UNRECOGNIZED: &str =
    "special word boundary assertion is unrecognized";
const ERR_SPECIAL_WORD_OR_REP_UNEXPECTED_EOF: &str =
    "found start of special word boundary or repetition without an end";

type R<T> = Result<T, Error>;

#[derive(Clone, Copy, Default)]
struct Flags {
    case_insensitive: bool,
    multi_line: bool,
    dot_matches_new_line: bool,
    swap_greed: bool,
    crlf: bool,
    ignore_whitespace: bool,
}

/// `regex-lite`'s recursive-descent parser, step for step (same grammar, same errors).
struct Parser<'a> {
    pattern: &'a str,
    pos: usize,
    depth: u32,
    flags: Flags,
    capture_names: Vec<String>,
}

impl<'a> Parser<'a> {
    fn new(pattern: &'a str) -> Parser<'a> {
        Parser {
            pattern,
            pos: 0,
            depth: 0,
            flags: Flags::default(),
            capture_names: Vec::new(),
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.pattern[self.pos..].chars().next()
    }
    /// The current char; `'\0'` at the end (callers check `is_done` first, as in regex-lite).
    fn char(&self) -> char {
        self.peek_char().unwrap_or('\0')
    }
    fn is_done(&self) -> bool {
        self.pos == self.pattern.len()
    }
    fn at(&self, c: char) -> bool {
        self.peek_char() == Some(c)
    }
    fn bump(&mut self) -> bool {
        match self.peek_char() {
            Some(c) => {
                self.pos += c.len_utf8();
                !self.is_done()
            }
            None => false,
        }
    }
    fn bump_if(&mut self, prefix: &str) -> bool {
        if self.pattern[self.pos..].starts_with(prefix) {
            self.pos += prefix.len();
            true
        } else {
            false
        }
    }
    fn bump_and_bump_space(&mut self) -> bool {
        if !self.bump() {
            return false;
        }
        self.bump_space();
        !self.is_done()
    }
    fn bump_space(&mut self) {
        if !self.flags.ignore_whitespace {
            return;
        }
        while let Some(c) = self.peek_char() {
            if c.is_whitespace() {
                self.bump();
            } else if c == '#' {
                self.bump();
                while let Some(c) = self.peek_char() {
                    self.bump();
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }
    fn peek(&self) -> Option<char> {
        let c = self.peek_char()?;
        self.pattern[self.pos + c.len_utf8()..].chars().next()
    }
    fn peek_space(&self) -> Option<char> {
        if !self.flags.ignore_whitespace {
            return self.peek();
        }
        let c = self.peek_char()?;
        let mut start = self.pos + c.len_utf8();
        let mut in_comment = false;
        for (i, ch) in self.pattern[start..].char_indices() {
            if ch.is_whitespace() {
                continue;
            } else if !in_comment && ch == '#' {
                in_comment = true;
            } else if in_comment && ch == '\n' {
                in_comment = false;
            } else {
                start += i;
                break;
            }
        }
        self.pattern[start..].chars().next()
    }

    fn parse(&mut self) -> R<Hir> {
        let hir = self.parse_inner()?;
        hir.check_nesting(0)?;
        Ok(hir)
    }

    fn parse_inner(&mut self) -> R<Hir> {
        let depth = self.depth;
        if depth > NEST_LIMIT {
            return Err(Error(ERR_TOO_MUCH_NESTING));
        }
        self.depth += 1;
        let mut alternates = Vec::new();
        let mut concat = Vec::new();
        loop {
            self.bump_space();
            let Some(c) = self.peek_char() else {
                break;
            };
            match c {
                '(' => {
                    let old = self.flags;
                    if let Some(sub) = self.parse_group()? {
                        concat.push(sub);
                        self.flags = old;
                    }
                    if !self.at(')') {
                        return Err(Error(ERR_UNCLOSED_GROUP));
                    }
                    self.bump();
                }
                ')' => {
                    if depth == 0 {
                        return Err(Error(ERR_UNOPENED_GROUP));
                    }
                    break;
                }
                '|' => {
                    alternates.push(Hir::concat(std::mem::take(&mut concat)));
                    self.bump();
                }
                '[' => concat.push(self.parse_class()?),
                '?' | '*' | '+' => {
                    let Some(sub) = concat.pop() else {
                        return Err(Error(ERR_UNCOUNTED_REP_SUB_MISSING));
                    };
                    let (min, max) = match c {
                        '?' => (0, Some(1)),
                        '*' => (0, None),
                        _ => (1, None),
                    };
                    if self.bump() && self.at('?') {
                        self.bump();
                    }
                    concat.push(Hir::rep(min, max, sub));
                }
                '{' => {
                    let Some(sub) = concat.pop() else {
                        return Err(Error(ERR_COUNTED_REP_SUB_MISSING));
                    };
                    let (min, max) = self.parse_counted_repetition()?;
                    concat.push(Hir::rep(min, max, sub));
                }
                _ => concat.push(self.parse_primitive()?),
            }
        }
        self.depth -= 1;
        alternates.push(Hir::concat(concat));
        Ok(Hir::alt(alternates))
    }

    fn parse_primitive(&mut self) -> R<Hir> {
        let ch = self.char();
        self.bump();
        Ok(match ch {
            '\\' => return self.parse_escape(),
            '.' => {
                let f = self.flags;
                Hir::Class(if f.dot_matches_new_line {
                    vec![('\0', char::MAX)]
                } else if f.crlf {
                    vec![('\0', '\x09'), ('\x0B', '\x0C'), ('\x0E', char::MAX)]
                } else {
                    vec![('\0', '\x09'), ('\x0B', char::MAX)]
                })
            }
            '^' => Hir::Look(match (self.flags.multi_line, self.flags.crlf) {
                (false, _) => Look::Start,
                (true, false) => Look::StartLF,
                (true, true) => Look::StartCRLF,
            }),
            '$' => Hir::Look(match (self.flags.multi_line, self.flags.crlf) {
                (false, _) => Look::End,
                (true, false) => Look::EndLF,
                (true, true) => Look::EndCRLF,
            }),
            ch => self.hir_char(ch),
        })
    }

    fn hir_char(&self, ch: char) -> Hir {
        if self.flags.case_insensitive {
            if let Some(f) = fold_range((ch, ch)) {
                return Hir::class(vec![(ch, ch), f]);
            }
        }
        Hir::Char(ch)
    }

    /// After a `\`.
    fn parse_escape(&mut self) -> R<Hir> {
        let Some(ch) = self.peek_char() else {
            return Err(Error(ERR_ESCAPE_UNEXPECTED_EOF));
        };
        match ch {
            '0'..='9' => return Err(Error(ERR_BACKREF_UNSUPPORTED)),
            'p' | 'P' => return Err(Error(ERR_UNICODE_CLASS_UNSUPPORTED)),
            'x' | 'u' | 'U' => return self.parse_hex(),
            'd' | 's' | 'w' | 'D' | 'S' | 'W' => {
                self.bump();
                let name = match ch.to_ascii_lowercase() {
                    'd' => "digit",
                    's' => "space",
                    _ => "word",
                };
                let mut ranges = posix_class(name).unwrap_or_default();
                if ch.is_ascii_uppercase() {
                    negate(&mut ranges);
                }
                return Ok(Hir::Class(ranges));
            }
            _ => {}
        }
        self.bump();
        if is_escapable_character(ch) {
            return Ok(self.hir_char(ch));
        }
        let look = match ch {
            'a' => return Ok(self.hir_char('\x07')),
            'f' => return Ok(self.hir_char('\x0C')),
            't' => return Ok(self.hir_char('\t')),
            'n' => return Ok(self.hir_char('\n')),
            'r' => return Ok(self.hir_char('\r')),
            'v' => return Ok(self.hir_char('\x0B')),
            'A' => Look::Start,
            'z' => Look::End,
            'b' => {
                if self.at('{') {
                    if let Some(look) = self.maybe_parse_special_word_boundary()? {
                        return Ok(Hir::Look(look));
                    }
                }
                Look::Word
            }
            'B' => Look::WordNegate,
            '<' => Look::WordStart,
            '>' => Look::WordEnd,
            _ => return Err(Error(ERR_ESCAPE_UNRECOGNIZED)),
        };
        Ok(Hir::Look(look))
    }

    /// `\b{start}` and friends, or `None` (parser back at `{`) for a repetition like `\b{5}`.
    fn maybe_parse_special_word_boundary(&mut self) -> R<Option<Look>> {
        let valid = |c: char| c.is_ascii_alphabetic() || c == '-';
        let start = self.pos;
        if !self.bump_and_bump_space() {
            return Err(Error(ERR_SPECIAL_WORD_OR_REP_UNEXPECTED_EOF));
        }
        if !valid(self.char()) {
            self.pos = start;
            return Ok(None);
        }
        let mut scratch = String::new();
        while !self.is_done() && valid(self.char()) {
            scratch.push(self.char());
            self.bump_and_bump_space();
        }
        if !self.at('}') {
            return Err(Error(ERR_SPECIAL_WORD_BOUNDARY_UNCLOSED));
        }
        self.bump();
        Ok(Some(match scratch.as_str() {
            "start" => Look::WordStart,
            "end" => Look::WordEnd,
            "start-half" => Look::WordStartHalf,
            "end-half" => Look::WordEndHalf,
            _ => return Err(Error(ERR_SPECIAL_WORD_BOUNDARY_UNRECOGNIZED)),
        }))
    }

    /// At the `x`, `u` or `U` of `\xNN`, `\x{N..}`, `\uNNNN`, `\UNNNNNNNN`.
    fn parse_hex(&mut self) -> R<Hir> {
        let digits = match self.char() {
            'x' => 2,
            'u' => 4,
            _ => 8,
        };
        if !self.bump_and_bump_space() {
            return Err(Error(ERR_HEX_UNEXPECTED_EOF));
        }
        let mut n: Option<u32> = Some(0);
        let mut push = |c: char| {
            n = n
                .and_then(|n| n.checked_mul(16))
                .and_then(|n| n.checked_add(c.to_digit(16).unwrap_or(0)));
        };
        let (invalid, empty) = if self.at('{') {
            let mut any = false;
            while self.bump_and_bump_space() && !self.at('}') {
                if !self.char().is_ascii_hexdigit() {
                    return Err(Error(ERR_HEX_BRACE_INVALID_DIGIT));
                }
                push(self.char());
                any = true;
            }
            if self.is_done() {
                return Err(Error(ERR_HEX_BRACE_UNEXPECTED_EOF));
            }
            self.bump_and_bump_space();
            (ERR_HEX_BRACE_INVALID, !any)
        } else {
            for i in 0..digits {
                if i > 0 && !self.bump_and_bump_space() {
                    return Err(Error(ERR_HEX_FIXED_UNEXPECTED_EOF));
                }
                if !self.char().is_ascii_hexdigit() {
                    return Err(Error(ERR_HEX_FIXED_INVALID_DIGIT));
                }
                push(self.char());
            }
            self.bump_and_bump_space();
            (ERR_HEX_FIXED_INVALID, false)
        };
        if empty {
            return Err(Error(ERR_HEX_BRACE_EMPTY));
        }
        match n.and_then(char::from_u32) {
            Some(ch) => Ok(self.hir_char(ch)),
            None => Err(Error(invalid)),
        }
    }

    fn parse_decimal(&mut self) -> R<u32> {
        while !self.is_done() && self.char().is_whitespace() {
            self.bump();
        }
        let mut n: Option<u32> = Some(0);
        let mut any = false;
        while !self.is_done() && self.char().is_ascii_digit() {
            let d = self.char() as u32 - '0' as u32;
            n = n
                .and_then(|n| n.checked_mul(10))
                .and_then(|n| n.checked_add(d));
            any = true;
            self.bump_and_bump_space();
        }
        while !self.is_done() && self.char().is_whitespace() {
            self.bump_and_bump_space();
        }
        if !any {
            return Err(Error(ERR_DECIMAL_NO_DIGITS));
        }
        n.ok_or(Error(ERR_DECIMAL_INVALID))
    }

    /// At the `{` of `{n}`, `{n,}`, `{n,m}` (optionally followed by `?`).
    fn parse_counted_repetition(&mut self) -> R<(u32, Option<u32>)> {
        if !self.bump_and_bump_space() {
            return Err(Error(ERR_COUNTED_REP_UNCLOSED));
        }
        let min = self.parse_decimal()?;
        let mut max = Some(min);
        if self.is_done() {
            return Err(Error(ERR_COUNTED_REP_MIN_UNCLOSED));
        }
        if self.at(',') {
            if !self.bump_and_bump_space() {
                return Err(Error(ERR_COUNTED_REP_COMMA_UNCLOSED));
            }
            max = if self.at('}') {
                None
            } else {
                Some(self.parse_decimal()?)
            };
            if self.is_done() {
                return Err(Error(ERR_COUNTED_REP_MIN_MAX_UNCLOSED));
            }
        }
        if !self.at('}') {
            return Err(Error(ERR_COUNTED_REP_INVALID));
        }
        if self.bump_and_bump_space() && self.at('?') {
            self.bump();
        }
        if max.is_some_and(|max| min > max) {
            return Err(Error(ERR_COUNTED_REP_INVALID_RANGE));
        }
        Ok((min, max))
    }

    /// At a `(`: a group, or `None` for a flag directive like `(?i)` (parser left at its `)`).
    fn parse_group(&mut self) -> R<Option<Hir>> {
        self.bump_and_bump_space();
        if self.bump_if("?=") || self.bump_if("?!") || self.bump_if("?<=") || self.bump_if("?<!") {
            return Err(Error(ERR_LOOK_UNSUPPORTED));
        }
        if self.bump_if("?P<") || self.bump_if("?<") {
            self.parse_capture_name()?;
            let sub = self.parse_inner()?;
            Ok(Some(Hir::Group(Box::new(sub))))
        } else if self.bump_if("?") {
            if self.is_done() {
                return Err(Error(ERR_UNCLOSED_GROUP_QUESTION));
            }
            let start = self.pos;
            self.flags = self.parse_flags()?;
            if self.at(')') {
                if self.pos == start {
                    return Err(Error(ERR_EMPTY_FLAGS));
                }
                Ok(None)
            } else {
                self.bump();
                self.parse_inner().map(Some)
            }
        } else {
            let sub = self.parse_inner()?;
            Ok(Some(Hir::Group(Box::new(sub))))
        }
    }

    fn parse_capture_name(&mut self) -> R<()> {
        if self.is_done() {
            return Err(Error(ERR_MISSING_GROUP_NAME));
        }
        let start = self.pos;
        loop {
            if self.at('>') {
                break;
            }
            if !is_capture_char(self.char(), self.pos == start) {
                return Err(Error(ERR_INVALID_GROUP_NAME));
            }
            if !self.bump() {
                break;
            }
        }
        let end = self.pos;
        if self.is_done() {
            return Err(Error(ERR_UNCLOSED_GROUP_NAME));
        }
        self.bump();
        let name = &self.pattern[start..end];
        if name.is_empty() {
            return Err(Error(ERR_EMPTY_GROUP_NAME));
        }
        if self.capture_names.iter().any(|n| n == name) {
            return Err(Error(ERR_DUPLICATE_CAPTURE_NAME));
        }
        self.capture_names.push(name.to_string());
        Ok(())
    }

    fn parse_flags(&mut self) -> R<Flags> {
        let mut flags = self.flags;
        let mut negate = false;
        let mut last_was_negation = false;
        let mut seen = String::new();
        while !self.at(':') && !self.at(')') {
            let c = self.char();
            if c == '-' {
                last_was_negation = true;
                if negate {
                    return Err(Error(ERR_FLAG_REPEATED_NEGATION));
                }
                negate = true;
            } else {
                last_was_negation = false;
                let on = !negate;
                match c {
                    'i' => flags.case_insensitive = on,
                    'm' => flags.multi_line = on,
                    's' => flags.dot_matches_new_line = on,
                    'U' => flags.swap_greed = on,
                    'R' => flags.crlf = on,
                    'x' => flags.ignore_whitespace = on,
                    'u' => {}
                    _ => return Err(Error(ERR_FLAG_UNRECOGNIZED)),
                }
                if seen.contains(c) {
                    return Err(Error(ERR_FLAG_DUPLICATE));
                }
                seen.push(c);
            }
            if !self.bump() {
                return Err(Error(ERR_FLAG_UNEXPECTED_EOF));
            }
        }
        if last_was_negation {
            return Err(Error(ERR_FLAG_DANGLING_NEGATION));
        }
        Ok(flags)
    }

    /// At a `[`.
    fn parse_class(&mut self) -> R<Hir> {
        let mut union = Vec::new();
        if !self.bump_and_bump_space() {
            return Err(Error(ERR_CLASS_UNCLOSED));
        }
        let negated = self.at('^');
        if negated && !self.bump_and_bump_space() {
            return Err(Error(ERR_CLASS_UNCLOSED_AFTER_NEGATION));
        }
        while self.at('-') {
            union.push(('-', '-'));
            if !self.bump_and_bump_space() {
                return Err(Error(ERR_CLASS_UNCLOSED_AFTER_DASH));
            }
        }
        if union.is_empty() && self.at(']') {
            union.push((']', ']'));
            if !self.bump_and_bump_space() {
                return Err(Error(ERR_CLASS_UNCLOSED_AFTER_CLOSING));
            }
        }
        loop {
            self.bump_space();
            let Some(c) = self.peek_char() else {
                return Err(Error(ERR_CLASS_UNCLOSED));
            };
            let next = self.peek();
            match c {
                '[' => match self.maybe_parse_posix_class() {
                    Some(ranges) => union.extend(ranges),
                    None => return Err(Error(ERR_CLASS_NEST_UNSUPPORTED)),
                },
                ']' => {
                    self.bump();
                    canonicalize(&mut union);
                    // Fold before negating: `(?i)[^x]` excludes `X` too.
                    if self.flags.case_insensitive {
                        ascii_case_fold(&mut union);
                    }
                    if negated {
                        negate(&mut union);
                    }
                    return Ok(Hir::Class(union));
                }
                '&' if next == Some('&') => return Err(Error(ERR_CLASS_INTERSECTION_UNSUPPORTED)),
                '-' if next == Some('-') => return Err(Error(ERR_CLASS_DIFFERENCE_UNSUPPORTED)),
                '~' if next == Some('~') => return Err(Error(ERR_CLASS_SYMDIFFERENCE_UNSUPPORTED)),
                _ => self.parse_class_range(&mut union)?,
            }
        }
    }

    fn parse_class_range(&mut self, union: &mut Vec<(char, char)>) -> R<()> {
        let first = self.parse_class_item()?;
        self.bump_space();
        if self.is_done() {
            return Err(Error(ERR_CLASS_UNCLOSED_AFTER_ITEM));
        }
        if !self.at('-') || matches!(self.peek_space(), Some(']' | '-')) {
            match first {
                Hir::Char(c) => union.push((c, c)),
                Hir::Class(ranges) => union.extend(ranges),
                _ => return Err(Error(ERR_CLASS_INVALID_ITEM)),
            }
            return Ok(());
        }
        if !self.bump_and_bump_space() {
            return Err(Error(ERR_CLASS_UNCLOSED_AFTER_DASH));
        }
        let second = self.parse_class_item()?;
        let (Hir::Char(start), Hir::Char(end)) = (first, second) else {
            return Err(Error(ERR_CLASS_INVALID_RANGE_ITEM));
        };
        if start > end {
            return Err(Error(ERR_CLASS_INVALID_RANGE));
        }
        union.push((start, end));
        Ok(())
    }

    fn parse_class_item(&mut self) -> R<Hir> {
        let ch = self.char();
        self.bump();
        if ch == '\\' {
            self.parse_escape()
        } else {
            Ok(Hir::Char(ch))
        }
    }

    /// At the outer `[` of `[:name:]` / `[:^name:]`; `None` (parser unmoved) if it is not one.
    fn maybe_parse_posix_class(&mut self) -> Option<Vec<(char, char)>> {
        let start = self.pos;
        let parsed = self.posix_class_inner();
        if parsed.is_none() {
            self.pos = start;
        }
        parsed
    }

    fn posix_class_inner(&mut self) -> Option<Vec<(char, char)>> {
        if !self.bump() || !self.at(':') || !self.bump() {
            return None;
        }
        let negated = self.at('^');
        if negated && !self.bump() {
            return None;
        }
        let name_start = self.pos;
        while !self.at(':') && self.bump() {}
        if self.is_done() {
            return None;
        }
        let name = &self.pattern[name_start..self.pos];
        if !self.bump_if(":]") {
            return None;
        }
        let mut ranges = posix_class(name)?;
        if negated {
            negate(&mut ranges);
        }
        Some(ranges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(re: &str) -> Regex {
        Regex::new(&format!("^(?:{re})$")).unwrap()
    }

    #[test]
    fn matches_like_regex_lite() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("gr(a|e)y", &["gray", "grey"], &["graey", "gry", "xgray"]),
            ("always|v2", &["always", "v2"], &["alwaysv2", ""]),
            (".*beta.*", &["beta", "x-beta-y"], &["bet"]),
            ("a{2,3}", &["aa", "aaa"], &["a", "aaaa"]),
            ("a{2,}", &["aa", "aaaaa"], &["a"]),
            ("a{2}", &["aa"], &["aaa"]),
            ("(?i)abc", &["ABC", "aBc"], &["abd"]),
            ("[^a-c]+", &["xyz", "é"], &["xa"]),
            (r"\d+\.\d+", &["1.25"], &["1x25"]),
            (r"\w+\s\W", &["ab !"], &["ab c"]),
            ("[[:alpha:]]+[[:^digit:]]", &["ab-"], &["ab1"]),
            (r"\x41\u{42}", &["AB"], &["ab"]),
            ("(?x) a b # comment\n", &["ab"], &["a b"]),
            ("(?s).", &["\n"], &[]),
            (".", &["é"], &["\n"]),
            ("(a*)*", &["", "aaa"], &["b"]),
            (r"\bfoo\b", &["foo"], &[]),
            ("", &[""], &["a"]),
            ("a|", &["a", ""], &["b"]),
            ("(?i)[^x]", &["a"], &["x", "X"]),
            ("(?<n>a)(?P<m>b)", &["ab"], &["ba"]),
            ("[]a]", &["]", "a"], &["b"]),
            ("[-a]", &["-", "a"], &["b"]),
            ("(?m)^a$", &["a"], &["b"]),
        ];
        for (re, yes, no) in cases {
            let r = full(re);
            for y in *yes {
                assert!(r.is_match(y), "{re:?} should match {y:?}");
            }
            for n in *no {
                assert!(!r.is_match(n), "{re:?} should not match {n:?}");
            }
        }
        assert!(Regex::new("b").unwrap().is_match("abc"));
        assert!(!Regex::new("[^\\s\\S]").unwrap().is_match("abc"));
    }

    #[test]
    fn rejects_like_regex_lite() {
        for (re, err) in [
            ("(unclosed", ERR_UNCLOSED_GROUP),
            ("a)", ERR_UNOPENED_GROUP),
            ("*a", ERR_UNCOUNTED_REP_SUB_MISSING),
            ("a{2,1}", ERR_COUNTED_REP_INVALID_RANGE),
            ("a{", ERR_COUNTED_REP_UNCLOSED),
            (r"\1", ERR_BACKREF_UNSUPPORTED),
            (r"\pL", ERR_UNICODE_CLASS_UNSUPPORTED),
            ("(?=a)", ERR_LOOK_UNSUPPORTED),
            ("[a", ERR_CLASS_UNCLOSED_AFTER_ITEM),
            ("[z-a]", ERR_CLASS_INVALID_RANGE),
            ("[a[b]]", ERR_CLASS_NEST_UNSUPPORTED),
            ("[a&&b]", ERR_CLASS_INTERSECTION_UNSUPPORTED),
            ("(?q)", ERR_FLAG_UNRECOGNIZED),
            ("(?)", ERR_EMPTY_FLAGS),
            ("(?<a>x)(?<a>y)", ERR_DUPLICATE_CAPTURE_NAME),
            (r"\x{110000}", ERR_HEX_BRACE_INVALID),
            (r"\q", ERR_ESCAPE_UNRECOGNIZED),
            ("(?:a{1000}){1000}", "compiled regex exceeded size limit"),
        ] {
            assert_eq!(Regex::new(re).unwrap_err().0, err, "{re:?}");
        }
        let deep = format!("{}a{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(Regex::new(&deep).unwrap_err().0, ERR_TOO_MUCH_NESTING);
        let stacked = format!("a{}", "*".repeat(60));
        assert_eq!(Regex::new(&stacked).unwrap_err().0, ERR_TOO_MUCH_NESTING);
    }

    /// Same verdicts and errors as regex-lite on random patterns over its syntax.
    #[test]
    fn agrees_with_regex_lite() {
        const TOKENS: &[&str] = &[
            "a",
            "b",
            "A",
            "é",
            ".",
            "^",
            "$",
            "|",
            "(",
            ")",
            "(?:",
            "(?i)",
            "(?m)",
            "(?s)",
            "(?x)",
            "(?-i:",
            "(?<n>",
            "*",
            "+",
            "?",
            "??",
            "{2}",
            "{1,3}",
            "{2,}",
            "{,",
            "[",
            "]",
            "[^",
            "-",
            "a-z",
            "[:alpha:]",
            "\\d",
            "\\W",
            "\\s",
            "\\b",
            "\\B",
            "\\<",
            "\\>",
            "\\A",
            "\\z",
            "\\x41",
            "\\u{e9}",
            "\\.",
            "\\",
            " ",
            "#",
            "\n",
            "&&",
            "--",
            "\\b{start}",
            "\\1",
            "\\p",
        ];
        const HAY: &[char] = &['a', 'b', 'A', 'é', ' ', '\n', '.', '-', '1', 'z'];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..30_000 {
            let n = rng.usize(0..8);
            let pat: String = (0..n).map(|_| TOKENS[rng.usize(..TOKENS.len())]).collect();
            let ours = Regex::new(&pat);
            let theirs = regex_lite::Regex::new(&pat);
            match (&ours, &theirs) {
                (Ok(ours), Ok(theirs)) => {
                    for _ in 0..8 {
                        let len = rng.usize(0..6);
                        let hay: String = (0..len).map(|_| HAY[rng.usize(..HAY.len())]).collect();
                        assert_eq!(
                            ours.is_match(&hay),
                            theirs.is_match(&hay),
                            "{pat:?} on {hay:?}"
                        );
                    }
                }
                (Err(ours), Err(theirs)) => assert_eq!(ours.0, theirs.to_string(), "{pat:?}"),
                _ => panic!(
                    "{pat:?}: ours {:?}, regex-lite {:?}",
                    ours.err(),
                    theirs.err()
                ),
            }
        }
    }
}
