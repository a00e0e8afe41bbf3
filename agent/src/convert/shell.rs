//! Splitting a Compose `command:` / `entrypoint:` string into words, as Compose does (the
//! shell-words rules of `go-shellwords`, without expansion): blanks separate words, `'...'` is
//! literal, `"..."` keeps blanks and takes `\` before `"`, `\`, `$` and `` ` ``, and outside
//! quotes `\` takes the next character literally. Nothing is expanded (no `$VAR`, no globs):
//! variables were replaced by [`super::interpolate`] before, as Compose does.

/// Splits `s` into words; an unterminated quote or a trailing `\` is an error.
pub fn split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unterminated single quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => word.push(ch),
                            Some('\n') => {}
                            Some(ch) => {
                                word.push('\\');
                                word.push(ch);
                            }
                            None => return Err(format!("unterminated double quote in {s:?}")),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unterminated double quote in {s:?}")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(ch) => {
                    in_word = true;
                    word.push(ch);
                }
                None => return Err(format!("a trailing backslash in {s:?}")),
            },
            ch => {
                in_word = true;
                word.push(ch);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_like_compose() {
        let cases: [(&str, &[&str]); 8] = [
            ("python app.py", &["python", "app.py"]),
            ("  a   b  ", &["a", "b"]),
            (
                "--default-authentication-plugin=mysql_native_password",
                &["--default-authentication-plugin=mysql_native_password"],
            ),
            (
                r#"sh -c 'echo "hi there"; sleep 1'"#,
                &["sh", "-c", r#"echo "hi there"; sleep 1"#],
            ),
            (r#"echo "a \"b\" \$c \n""#, &["echo", r#"a "b" $c \n"#]),
            (r"echo a\ b", &["echo", "a b"]),
            ("echo ''", &["echo", ""]),
            ("x'y'\"z\"", &["xyz"]),
        ];
        for (input, want) in cases {
            let got = split(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        for bad in ["echo 'a", "echo \"a", "echo a\\"] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }
}
