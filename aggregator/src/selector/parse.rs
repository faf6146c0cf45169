//! Lexer, parser and label validation for selector text, after apimachinery's
//! `pkg/labels/selector.go` (`Lexer`, `Parser`) and `pkg/util/validation` (qualified names).
use std::collections::BTreeSet;

use super::{Operator, Requirement, SelectorError};

/// Selector text longer than this is refused before lexing (far beyond any real selector).
const MAX_SELECTOR_LEN: usize = 16 * 1024;
/// Longest label name or value (apimachinery `LabelValueMaxLength`, `qualifiedNameMaxLength`).
const MAX_NAME_LEN: usize = 63;
/// Longest key prefix (a DNS-1123 subdomain).
const MAX_PREFIX_LEN: usize = 253;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    In,
    NotIn,
    Bang,
    NotEquals,
    Equals,
    DoubleEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    /// The text apimachinery quotes in "found '…'" messages.
    fn literal(&self) -> &str {
        match self {
            Token::Ident(s) => s,
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Bang => "!",
            Token::NotEquals => "!=",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::Greater => ">",
            Token::Less => "<",
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
            Token::End => "",
        }
    }

    /// In a value position the keywords are plain identifiers (`a=in` is valid).
    fn as_value(&self) -> Option<String> {
        match self {
            Token::Ident(s) => Some(s.clone()),
            Token::In => Some("in".into()),
            Token::NotIn => Some("notin".into()),
            _ => None,
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>')
}

fn lex(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let next = chars.peek().map(|&(_, n)| n);
            let token = match (c, next) {
                ('!', Some('=')) => Some(Token::NotEquals),
                ('=', Some('=')) => Some(Token::DoubleEquals),
                _ => None,
            };
            if let Some(token) = token {
                chars.next();
                tokens.push(token);
                continue;
            }
            tokens.push(match c {
                '!' => Token::Bang,
                '=' => Token::Equals,
                '(' => Token::Open,
                ')' => Token::Close,
                ',' => Token::Comma,
                '<' => Token::Less,
                _ => Token::Greater,
            });
            continue;
        }
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let word = &text[start..end];
        tokens.push(match word {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word.to_string()),
        });
    }
    tokens.push(Token::End);
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

fn found(token: &Token, expected: &str) -> SelectorError {
    SelectorError(format!("found '{}', expected: {expected}", token.literal()))
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn requirements(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        match self.peek() {
            Token::End => return Ok(reqs),
            Token::Ident(_) | Token::Bang => {}
            other => return Err(found(other, "identifier or 'end of string'")),
        }
        loop {
            reqs.push(self.requirement()?);
            match self.next() {
                Token::End => return Ok(reqs),
                Token::Comma => match self.peek() {
                    Token::Ident(_) | Token::Bang => {}
                    other => return Err(found(other, "identifier after ','")),
                },
                other => return Err(found(&other, "',' or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = *self.peek() == Token::Bang;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Ident(key) => key,
            other => return Err(found(&other, "identifier")),
        };
        validate_label_key(&key).map_err(|e| SelectorError(e.to_string()))?;
        if negated {
            return Ok(requirement(key, Operator::DoesNotExist, BTreeSet::new()));
        }
        let operator = match self.peek() {
            Token::End | Token::Comma => {
                return Ok(requirement(key, Operator::Exists, BTreeSet::new()));
            }
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Greater => Operator::GreaterThan,
            Token::Less => Operator::LessThan,
            other => {
                return Err(found(
                    other,
                    "'=', '!=', '==', 'in', 'notin', '>', '<' or ',' or 'end of string'",
                ));
            }
        };
        self.next();
        let values = if matches!(operator, Operator::In | Operator::NotIn) {
            self.value_set()?
        } else {
            BTreeSet::from([self.exact_value()?])
        };
        for value in &values {
            validate_label_value(value)
                .map_err(|e| SelectorError(format!("{e}; at key: \"{key}\"")))?;
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            let value = values.first().map(String::as_str).unwrap_or("");
            if value.parse::<i64>().is_err() {
                return Err(SelectorError(format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer, got \"{value}\""
                )));
            }
        }
        Ok(requirement(key, operator, values))
    }

    /// After `=`, `==`, `!=`, `>`, `<`: one value, possibly empty (`a=` and `a=,b` are valid).
    fn exact_value(&mut self) -> Result<String, SelectorError> {
        let token = self.peek().clone();
        if matches!(token, Token::End | Token::Comma) {
            return Ok(String::new());
        }
        self.next();
        token.as_value().ok_or_else(|| found(&token, "identifier"))
    }

    /// After `in`/`notin`: `(v1,v2,…)`; `()` is the set holding the empty value, as upstream.
    fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let open = self.next();
        if open != Token::Open {
            return Err(found(&open, "'('"));
        }
        let mut values = BTreeSet::new();
        let mut expect_value = true;
        loop {
            let token = self.next();
            match token {
                Token::Close => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    return Ok(values);
                }
                Token::Comma => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    expect_value = true;
                }
                ref t => match t.as_value() {
                    Some(v) if expect_value => {
                        values.insert(v);
                        expect_value = false;
                    }
                    _ => return Err(found(t, "',' or ')'")),
                },
            }
        }
    }
}

fn requirement(key: String, operator: Operator, values: BTreeSet<String>) -> Requirement {
    Requirement {
        key,
        operator,
        values,
    }
}

/// Parses selector text into unsorted requirements.
pub(super) fn parse(text: &str) -> Result<Vec<Requirement>, SelectorError> {
    if text.len() > MAX_SELECTOR_LEN {
        return Err(SelectorError(format!(
            "selector is {} bytes long, the limit is {MAX_SELECTOR_LEN}",
            text.len()
        )));
    }
    Parser {
        tokens: lex(text),
        pos: 0,
    }
    .requirements()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, the shape of label names and non-empty values.
fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain: lower-case alphanumerics, `-` and `.`, alphanumeric at both ends.
fn is_dns_subdomain(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    s.len() <= MAX_PREFIX_LEN
        && alnum(first)
        && alnum(last)
        && bytes.iter().all(|b| alnum(b) || matches!(b, b'-' | b'.'))
}

const NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must \
     start and end with an alphanumeric character";

/// Why a label key or value is not valid; messages as apimachinery's validation words them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The key's prefix (before `/`) is not a DNS-1123 subdomain.
    #[error(
        "invalid label key \"{0}\": prefix part must be a lowercase DNS-1123 subdomain of at \
         most {MAX_PREFIX_LEN} characters"
    )]
    KeyPrefix(String),
    /// The key's name (after any `/`) is longer than 63 characters.
    #[error("invalid label key \"{0}\": name part must be no more than {MAX_NAME_LEN} characters")]
    KeyNameTooLong(String),
    /// The key's name is empty or not shaped like a label name.
    #[error("invalid label key \"{0}\": name part {NAME_RULE}")]
    KeyName(String),
    /// The value is longer than 63 characters.
    #[error("invalid label value: \"{0}\": must be no more than {MAX_NAME_LEN} characters")]
    ValueTooLong(String),
    /// The value is neither empty nor shaped like a label name.
    #[error("invalid label value: \"{0}\": a valid label must be an empty string or {NAME_RULE}")]
    Value(String),
}

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a name of ≤ 63 characters.
pub fn validate_label_key(key: &str) -> Result<(), LabelError> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Err(LabelError::KeyPrefix(key.to_string()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(LabelError::KeyNameTooLong(key.to_string()));
    }
    if !is_label_name(name) {
        return Err(LabelError::KeyName(key.to_string()));
    }
    Ok(())
}

/// Checks a label value: empty, or ≤ 63 characters shaped like a label name.
pub fn validate_label_value(value: &str) -> Result<(), LabelError> {
    if value.len() > MAX_NAME_LEN {
        return Err(LabelError::ValueTooLong(value.to_string()));
    }
    if !value.is_empty() && !is_label_name(value) {
        return Err(LabelError::Value(value.to_string()));
    }
    Ok(())
}
