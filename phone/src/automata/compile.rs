//! Building the digit automata: libphonenumber's number patterns (a small
//! regular language over the ten digits) parsed, turned into an NFA, then a
//! minimal DFA per region. Runs when `data/automata.bin` is regenerated (see
//! `tests/automata.rs`), never in a run.

use std::collections::HashMap;

/// A pattern of libphonenumber's metadata: digits, `\d`, digit classes,
/// groups, alternation and the usual quantifiers.
#[derive(Debug, Clone)]
enum Ast {
    Empty,
    /// A set of digits, bit d for digit d.
    Class(u16),
    Concat(Vec<Ast>),
    Alt(Vec<Ast>),
    Repeat(Box<Ast>, u32, Option<u32>),
}

const ANY_DIGIT: u16 = 0x3ff;

struct PatternParser<'a> {
    s: &'a [u8],
    i: usize,
}

/// Parses a pattern; an error names what the digit language does not cover.
fn parse(pattern: &str) -> Result<Ast, String> {
    let mut p = PatternParser {
        s: pattern.as_bytes(),
        i: 0,
    };
    let ast = p.alternation()?;
    if p.i != p.s.len() {
        return Err(format!(
            "{pattern:?}: unexpected {:?} at {}",
            p.s[p.i] as char, p.i
        ));
    }
    Ok(ast)
}

impl PatternParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    fn alternation(&mut self) -> Result<Ast, String> {
        let mut arms = vec![self.concatenation()?];
        while self.eat(b'|') {
            arms.push(self.concatenation()?);
        }
        Ok(if arms.len() == 1 {
            arms.pop().unwrap_or(Ast::Empty)
        } else {
            Ast::Alt(arms)
        })
    }

    fn concatenation(&mut self) -> Result<Ast, String> {
        let mut items = Vec::new();
        while let Some(b) = self.peek() {
            if b == b'|' || b == b')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(match items.len() {
            0 => Ast::Empty,
            1 => items.pop().unwrap_or(Ast::Empty),
            _ => Ast::Concat(items),
        })
    }

    fn atom(&mut self) -> Result<Ast, String> {
        let b = self.peek().ok_or("pattern ends early")?;
        self.i += 1;
        match b {
            b'0'..=b'9' => Ok(Ast::Class(1 << (b - b'0'))),
            b'\\' if self.eat(b'd') => Ok(Ast::Class(ANY_DIGIT)),
            b'(' => {
                if self.eat(b'?') && !self.eat(b':') {
                    return Err(format!("group flags at {}", self.i));
                }
                let inner = self.alternation()?;
                if !self.eat(b')') {
                    return Err(format!("unclosed group at {}", self.i));
                }
                Ok(inner)
            }
            b'[' => self.class(),
            other => Err(format!("{:?} at {}", other as char, self.i - 1)),
        }
    }

    fn class(&mut self) -> Result<Ast, String> {
        let negated = self.eat(b'^');
        let mut set = 0u16;
        loop {
            let b = self.peek().ok_or("unclosed class")?;
            self.i += 1;
            match b {
                b']' => break,
                b'\\' if self.eat(b'd') => set |= ANY_DIGIT,
                b'0'..=b'9' => {
                    let lo = b - b'0';
                    let hi = if self.peek() == Some(b'-') && self.s.get(self.i + 1) != Some(&b']') {
                        self.i += 1;
                        match self.peek() {
                            Some(h @ b'0'..=b'9') => {
                                self.i += 1;
                                h - b'0'
                            }
                            _ => return Err(format!("bad range at {}", self.i)),
                        }
                    } else {
                        lo
                    };
                    for d in lo..=hi {
                        set |= 1 << d;
                    }
                }
                other => return Err(format!("{:?} in a class at {}", other as char, self.i - 1)),
            }
        }
        Ok(Ast::Class(if negated { !set & ANY_DIGIT } else { set }))
    }

    fn quantified(&mut self, mut atom: Ast) -> Result<Ast, String> {
        loop {
            let (min, max) = match self.peek() {
                Some(b'?') => (0, Some(1)),
                Some(b'*') => (0, None),
                Some(b'+') => (1, None),
                Some(b'{') => {
                    self.i += 1;
                    let min = self.number()?;
                    let max = if self.eat(b',') {
                        if self.peek() == Some(b'}') {
                            None
                        } else {
                            Some(self.number()?)
                        }
                    } else {
                        Some(min)
                    };
                    if self.peek() != Some(b'}') {
                        return Err(format!("bad repetition at {}", self.i));
                    }
                    (min, max)
                }
                _ => return Ok(atom),
            };
            self.i += 1;
            if matches!(self.peek(), Some(b'?' | b'+')) && min != max.unwrap_or(u32::MAX) {
                return Err(format!("lazy or possessive repetition at {}", self.i));
            }
            atom = Ast::Repeat(Box::new(atom), min, max);
        }
    }

    fn number(&mut self) -> Result<u32, String> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("expected a number at {start}"))
    }
}

#[derive(Clone, Copy)]
enum Node {
    /// One digit of the set, then the next node.
    Digit(u16, u32),
    Split(u32, u32),
    Jump(u32),
    /// Pattern n matched.
    Accept(u8),
}

#[derive(Default)]
struct Nfa {
    nodes: Vec<Node>,
}

impl Nfa {
    fn push(&mut self, node: Node) -> u32 {
        self.nodes.push(node);
        (self.nodes.len() - 1) as u32
    }

    /// Compiles `ast` so that it continues at `next`; returns its entry node.
    fn compile(&mut self, ast: &Ast, next: u32) -> u32 {
        match ast {
            Ast::Empty => next,
            Ast::Class(set) => self.push(Node::Digit(*set, next)),
            Ast::Concat(items) => items.iter().rev().fold(next, |n, a| self.compile(a, n)),
            Ast::Alt(arms) => {
                let starts: Vec<u32> = arms.iter().map(|a| self.compile(a, next)).collect();
                self.alternatives(&starts)
            }
            Ast::Repeat(inner, min, max) => {
                let mut tail = match max {
                    Some(max) => {
                        // Optional copies nested: x{0,2} is (x(x)?)?.
                        let mut t = next;
                        for _ in *min..*max {
                            let body = self.compile(inner, t);
                            t = self.push(Node::Split(body, next));
                        }
                        t
                    }
                    None => {
                        let looped = self.push(Node::Jump(next));
                        let body = self.compile(inner, looped);
                        self.nodes[looped as usize] = Node::Split(body, next);
                        looped
                    }
                };
                for _ in 0..*min {
                    tail = self.compile(inner, tail);
                }
                tail
            }
        }
    }

    fn alternatives(&mut self, starts: &[u32]) -> u32 {
        match starts {
            [] => self.push(Node::Jump(u32::MAX)),
            [one] => *one,
            [first, rest @ ..] => {
                let rest = self.alternatives(rest);
                self.push(Node::Split(*first, rest))
            }
        }
    }

    /// The digit and accept nodes reachable from `from` without a digit.
    fn closure(&self, from: impl IntoIterator<Item = u32>, seen: &mut [bool]) -> Vec<u32> {
        seen.iter_mut().for_each(|s| *s = false);
        let mut stack: Vec<u32> = from.into_iter().collect();
        let mut out = Vec::new();
        while let Some(n) = stack.pop() {
            if n == u32::MAX || std::mem::replace(&mut seen[n as usize], true) {
                continue;
            }
            match self.nodes[n as usize] {
                Node::Digit(..) | Node::Accept(_) => out.push(n),
                Node::Split(a, b) => stack.extend([b, a]),
                Node::Jump(a) => stack.push(a),
            }
        }
        out.sort_unstable();
        out
    }
}

/// What a pattern of a region's automaton asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// The whole national number matches (libphonenumber's `matches`).
    Whole,
    /// Some prefix matches (libphonenumber's `lookingAt` on leading digits).
    Prefix,
}

/// A DFA over the digits: state 0 is dead, every state's mask says which
/// patterns match a number ending there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DigitDfa {
    pub(crate) start: u16,
    /// Ten next states per state.
    pub(crate) next: Vec<u16>,
    pub(crate) mask: Vec<u128>,
}

/// One DFA for several patterns; bit i of a state's mask is pattern i. A
/// `None` pattern never matches.
pub(crate) fn build(patterns: &[(Option<&str>, Anchor)]) -> Result<DigitDfa, String> {
    if patterns.len() > 128 {
        return Err(format!("{} patterns, at most 128", patterns.len()));
    }
    let mut nfa = Nfa::default();
    let mut starts = Vec::new();
    for (i, (pattern, anchor)) in patterns.iter().enumerate() {
        let Some(pattern) = pattern else { continue };
        let mut ast = parse(pattern)?;
        if *anchor == Anchor::Prefix {
            ast = Ast::Concat(vec![
                ast,
                Ast::Repeat(Box::new(Ast::Class(ANY_DIGIT)), 0, None),
            ]);
        }
        let accept = nfa.push(Node::Accept(i as u8));
        starts.push(nfa.compile(&ast, accept));
    }
    let mut seen = vec![false; nfa.nodes.len()];
    let mut ids: HashMap<Vec<u32>, u16> = HashMap::new();
    let mut sets: Vec<Vec<u32>> = Vec::new();
    let mut add = |set: Vec<u32>, sets: &mut Vec<Vec<u32>>| -> Result<u16, String> {
        if let Some(&id) = ids.get(&set) {
            return Ok(id);
        }
        let id = u16::try_from(sets.len()).map_err(|_| "more than 65,535 states".to_string())?;
        ids.insert(set.clone(), id);
        sets.push(set);
        Ok(id)
    };
    add(Vec::new(), &mut sets)?;
    let start = add(nfa.closure(starts, &mut seen), &mut sets)?;
    let mut next = Vec::new();
    let mut mask = Vec::new();
    let mut at = 0;
    while at < sets.len() {
        let set = sets[at].clone();
        let mut m = 0u128;
        for &n in &set {
            if let Node::Accept(i) = nfa.nodes[n as usize] {
                m |= 1 << i;
            }
        }
        mask.push(m);
        for d in 0..10 {
            let moved = set.iter().filter_map(|&n| match nfa.nodes[n as usize] {
                Node::Digit(s, to) if s & (1 << d) != 0 => Some(to),
                _ => None,
            });
            let target = nfa.closure(moved, &mut seen);
            next.push(add(target, &mut sets)?);
        }
        at += 1;
    }
    Ok(minimize(DigitDfa { start, next, mask }))
}

/// Moore's partition refinement; the dead state stays 0.
fn minimize(dfa: DigitDfa) -> DigitDfa {
    let n = dfa.mask.len();
    let mut class: Vec<u32> = {
        let mut by_mask: HashMap<u128, u32> = HashMap::new();
        (0..n)
            .map(|s| {
                let len = by_mask.len() as u32;
                *by_mask.entry(dfa.mask[s]).or_insert(len)
            })
            .collect()
    };
    loop {
        let mut by_signature: HashMap<(u32, [u32; 10]), u32> = HashMap::new();
        let refined: Vec<u32> = (0..n)
            .map(|s| {
                let mut to = [0u32; 10];
                for (d, t) in to.iter_mut().enumerate() {
                    *t = class[dfa.next[s * 10 + d] as usize];
                }
                let len = by_signature.len() as u32;
                *by_signature.entry((class[s], to)).or_insert(len)
            })
            .collect();
        let done = by_signature.len() == class.iter().max().map_or(0, |m| *m as usize + 1);
        class = refined;
        if done {
            break;
        }
    }
    // Renumber from the dead state's class, so every state that can never
    // match is 0.
    let mut order: HashMap<u32, u16> = HashMap::new();
    order.insert(class[0], 0);
    for &c in &class {
        let len = order.len() as u16;
        order.entry(c).or_insert(len);
    }
    let states = order.len();
    let mut next = vec![0u16; states * 10];
    let mut mask = vec![0u128; states];
    for s in 0..n {
        let c = order[&class[s]] as usize;
        mask[c] = dfa.mask[s];
        for d in 0..10 {
            next[c * 10 + d] = order[&class[dfa.next[s * 10 + d] as usize]];
        }
    }
    DigitDfa {
        start: order[&class[dfa.start as usize]],
        next,
        mask,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dfa: &DigitDfa, digits: &str) -> u128 {
        let mut s = dfa.start as usize;
        for b in digits.bytes() {
            s = dfa.next[s * 10 + (b - b'0') as usize] as usize;
        }
        dfa.mask[s]
    }

    #[test]
    fn whole_and_prefix_patterns_agree_with_the_regex_crate() {
        let patterns = [
            r"[2-9]\d{2}[2-9]\d{6}",
            r"(?:2(?:0[1-9]|1[0-2])|3[0-4])\d{4,6}",
            r"8(?:00|55|66|77|88)",
            r"1\d?|[02-9]",
            r"(?:[1-3]|6[0-2])\d*",
        ];
        let anchors = [
            Anchor::Whole,
            Anchor::Whole,
            Anchor::Prefix,
            Anchor::Prefix,
            Anchor::Whole,
        ];
        let spec: Vec<_> = patterns
            .iter()
            .zip(anchors)
            .map(|(p, a)| (Some(*p), a))
            .collect();
        let dfa = build(&spec).unwrap();
        let regexes: Vec<regex::Regex> = patterns
            .iter()
            .zip(anchors)
            .map(|(p, a)| match a {
                Anchor::Whole => regex::Regex::new(&format!("^(?:{p})$")).unwrap(),
                Anchor::Prefix => regex::Regex::new(&format!("^(?:{p})")).unwrap(),
            })
            .collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 13) as usize;
            let digits: String = (0..len)
                .map(|i| char::from(b'0' + ((x >> (i * 4)) % 10) as u8))
                .collect();
            let want = regexes.iter().enumerate().fold(0u128, |m, (i, r)| {
                m | (u128::from(r.is_match(&digits)) << i)
            });
            assert_eq!(run(&dfa, &digits), want, "{digits}");
        }
    }

    #[test]
    fn what_the_digit_language_does_not_cover_is_an_error() {
        assert!(parse("[a-z]").is_err());
        assert!(parse("(?i)1").is_err());
        assert!(parse("(12").is_err());
        assert!(parse("1*?").is_err());
    }
}
