//! `report.html`: one self-contained page per run (no network, no scripts,
//! no external fonts or images: the plots are inline SVG), written with
//! the run's other files, all or nothing.

use std::fmt::Write;

/// A page being built: its sections in order.
pub struct Page {
    title: String,
    sections: Vec<(String, String)>,
}

/// `s` with the five characters HTML gives a meaning escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `arg` as a POSIX shell reads it back: bare when it holds only safe
/// characters, else in single quotes (a quote inside as `'\''`).
fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The command line that ran this process, as `rain ARGS...`, quoted for
/// a shell.
pub fn command_line() -> String {
    let mut parts = vec!["rain".to_string()];
    parts.extend(std::env::args_os().skip(1).map(|a| shell_quote(&a.to_string_lossy())));
    parts.join(" ")
}

impl Page {
    /// An empty page.
    pub fn new(title: &str) -> Self {
        Page { title: title.to_string(), sections: Vec::new() }
    }

    /// A section of preformatted text (a console table).
    pub fn text(&mut self, heading: &str, text: &str) {
        self.sections.push((heading.to_string(), format!("<pre>{}</pre>", escape(text.trim_end()))));
    }

    /// A section of inline SVG plots, side by side when they fit. The SVG
    /// comes from plotters, which escapes the text it writes.
    pub fn plots(&mut self, heading: &str, svgs: &[&str]) {
        let mut body = String::from("<div class=\"plots\">");
        for svg in svgs {
            // The XML declaration, if any, has no place inside HTML.
            let start = svg.find("<svg").unwrap_or(0);
            body += "<figure>";
            body += &svg[start..];
            body += "</figure>";
        }
        body += "</div>";
        self.sections.push((heading.to_string(), body));
    }

    /// A section of key-value rows (the configuration), from a JSON object.
    pub fn config(&mut self, heading: &str, config: &serde_json::Value) {
        let mut body = String::from("<table class=\"config\">");
        if let Some(map) = config.as_object() {
            for (k, v) in map {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let _ = write!(body, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
            }
        }
        body += "</table>";
        self.sections.push((heading.to_string(), body));
    }

    /// The page, with the command that reproduces the run at the top.
    pub fn render(&self, command: &str) -> String {
        let mut html = String::new();
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            escape(&self.title),
            escape(&self.title)
        );
        let _ = write!(
            html,
            "<section><h2>Reproduce this run</h2><pre class=\"command\">{}</pre>\
             <p class=\"note\">Written by tapegrad {} (<code>cargo run --release -p rain --</code> instead of <code>rain</code> from a clone).</p></section>",
            escape(command),
            env!("CARGO_PKG_VERSION")
        );
        html += "\n<nav><ul>";
        for (i, (heading, _)) in self.sections.iter().enumerate() {
            let _ = write!(html, "<li><a href=\"#s{i}\">{}</a></li>", escape(heading));
        }
        html += "</ul></nav>\n";
        for (i, (heading, body)) in self.sections.iter().enumerate() {
            let _ = writeln!(html, "<section id=\"s{i}\"><h2>{}</h2>{body}</section>", escape(heading));
        }
        html += "</body>\n</html>\n";
        html
    }
}

/// The page's style: system fonts only, nothing fetched.
const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1500px;margin:24px auto;padding:0 16px;color:#222}\
h1{font-size:26px;margin:0 0 12px}h2{font-size:19px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}\
pre{background:#f6f6f6;padding:10px 12px;white-space:pre-wrap;font-size:13px;line-height:1.35;border-radius:4px}\
pre.command{background:#eef4fb;white-space:pre-wrap;word-break:break-all}\
.note{color:#666;font-size:13px}\
nav ul{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:6px 16px;font-size:14px}\
.plots{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figure svg{max-width:100%;height:auto;border:1px solid #eee}\
table.config{border-collapse:collapse;font-size:13px}table.config th{text-align:left;padding:2px 16px 2px 0;font-weight:600}\
table.config td{font-family:ui-monospace,Menlo,Consolas,monospace;padding:2px 0}";
