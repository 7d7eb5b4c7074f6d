//! HTML building for the console: one escaping helper every value goes through, and the page frame.

use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
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

/// Percent-encodes a value for a query string or a path segment.
pub fn url_part(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The navigation entries: (path, label).
const NAV: [(&str, &str); 5] = [
    ("/", "Tasks"),
    ("/dead-letters", "Dead letters"),
    ("/connections", "Connections"),
    ("/mappings", "Mappings"),
    ("/desk", "Sandbox desk"),
];

/// What the frame around a page needs to know.
pub struct Frame<'a> {
    /// Path of the current page, to mark it in the navigation.
    pub current: &'a str,
    /// Show the sandbox desk in the navigation (local mode with the built-in desk).
    pub desk: bool,
    /// The session's CSRF token for the sign-out form; `None` when nobody is signed in.
    pub sign_out_csrf: Option<&'a str>,
    /// A message shown above the content (already HTML; build it with [`notice`]).
    pub notice: Option<String>,
}

/// A whole page: `title` is text (escaped here), `body` is HTML built with [`esc`].
pub fn page(title: &str, frame: &Frame<'_>, body: &str) -> String {
    let mut nav = String::new();
    if frame.sign_out_csrf.is_some() || frame.current != "/login" {
        for (path, label) in NAV {
            if path == "/desk" && !frame.desk {
                continue;
            }
            let current = if path == frame.current { " aria-current=\"page\"" } else { "" };
            let _ = write!(nav, "<li><a href=\"{path}\"{current}>{label}</a></li>");
        }
    }
    let sign_out = match frame.sign_out_csrf {
        Some(csrf) => format!(
            "<form method=\"post\" action=\"/logout\" class=\"inline\">{}<button type=\"submit\">Sign out</button></form>",
            csrf_field(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · Ticket Bridge</title><style>{CSS}</style></head><body>\
<a class=\"skip\" href=\"#main\">Skip to content</a>\
<header><span class=\"brand\">Ticket Bridge</span><nav aria-label=\"Main\"><ul>{nav}</ul></nav>{sign_out}</header>\
<main id=\"main\"><h1>{title}</h1>{notice}{body}</main></body></html>",
        title = esc(title),
        notice = frame.notice.clone().unwrap_or_default(),
    )
}

/// A status message; `ok` picks the colour, the text is escaped.
pub fn notice(ok: bool, text: &str) -> String {
    let (class, role) = if ok { ("ok", "status") } else { ("err", "alert") };
    format!("<p class=\"notice {class}\" role=\"{role}\">{}</p>", esc(text))
}

/// The hidden CSRF input every form carries.
pub fn csrf_field(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf))
}

/// A `<select>` with a label; `options` are (value, label), `selected` the chosen value.
pub fn select(name: &str, label: &str, options: &[(String, String)], selected: &str) -> String {
    select_with_id(&format!("f-{name}"), name, label, options, selected)
}

/// [`select`] with an element id of its own (several selects of one name on a page).
pub fn select_with_id(id: &str, name: &str, label: &str, options: &[(String, String)], selected: &str) -> String {
    let (id, name) = (esc(id), esc(name));
    let mut s = format!("<label for=\"{id}\">{}</label><select id=\"{id}\" name=\"{name}\">", esc(label));
    for (value, text) in options {
        let sel = if value == selected { " selected" } else { "" };
        let _ = write!(s, "<option value=\"{}\"{sel}>{}</option>", esc(value), esc(text));
    }
    s.push_str("</select>");
    s
}

const CSS: &str = "\
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1b1f24;background:#f6f7f9}\
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#fff;padding:4px}\
header{display:flex;gap:1.5rem;align-items:center;background:#1f3a5f;color:#fff;padding:.5rem 1.5rem;flex-wrap:wrap}\
.brand{font-weight:700}nav ul{display:flex;gap:1rem;list-style:none;margin:0;padding:0;flex-wrap:wrap}\
nav a{color:#fff}nav a[aria-current]{font-weight:700;text-decoration:underline 3px}\
header form{margin-left:auto}main{max-width:75rem;margin:0 auto;padding:1rem 1.5rem}\
table{border-collapse:collapse;width:100%;background:#fff;margin:.5rem 0 1.5rem}\
th,td{border:1px solid #d0d5dc;padding:.35rem .5rem;text-align:left;vertical-align:top}th{background:#eef1f5}\
caption{text-align:left;font-weight:600;padding:.25rem 0}\
a{color:#0b57b7}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #f0a500;outline-offset:2px}\
button{font:inherit;padding:.3rem .8rem;border:1px solid #1f3a5f;background:#1f3a5f;color:#fff;border-radius:4px;cursor:pointer}\
button.secondary{background:#fff;color:#1f3a5f}\
input,select,textarea{font:inherit;padding:.25rem .4rem;border:1px solid #8a94a3;border-radius:4px}\
textarea{width:100%;min-height:8rem;font-family:ui-monospace,monospace}\
form.filters{display:flex;gap:.5rem 1rem;flex-wrap:wrap;align-items:end}form.filters label{display:block;font-size:.9rem}\
form.inline{display:inline}fieldset{border:1px solid #d0d5dc;background:#fff;margin:0 0 1rem}\
.notice{padding:.5rem .75rem;border-radius:4px}.ok{background:#e3f4e6;border:1px solid #3d8b4f}\
.err{background:#fdecea;border:1px solid #b3261e}.warn{background:#fff6dc;border:1px solid #a06b00}\
.state{font-weight:600}ol.timeline{background:#fff;border:1px solid #d0d5dc;padding:.5rem 2rem}\
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;background:#fff;padding:.75rem;border:1px solid #d0d5dc}\
dt{font-weight:600}dd{margin:0}pre{white-space:pre-wrap;background:#fff;border:1px solid #d0d5dc;padding:.5rem}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_neutralises_markup_and_attribute_breakouts() {
        assert_eq!(esc("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(esc("a\" onmouseover='x' & b"), "a&quot; onmouseover=&#39;x&#39; &amp; b");
        assert_eq!(esc("plain text, ünïcode"), "plain text, ünïcode");
    }

    #[test]
    fn page_escapes_the_title_and_marks_the_current_page() {
        let frame = Frame { current: "/connections", desk: false, sign_out_csrf: Some("t\"k"), notice: None };
        let html = page("<b>x</b>", &frame, "<p>body</p>");
        assert!(html.contains("<h1>&lt;b&gt;x&lt;/b&gt;</h1>"));
        assert!(html.contains("<a href=\"/connections\" aria-current=\"page\">Connections</a>"));
        assert!(!html.contains("/desk"), "the desk is only listed in local mode");
        assert!(html.contains("value=\"t&quot;k\""));
    }

    #[test]
    fn select_marks_the_chosen_option_and_escapes_values() {
        let s = select("state", "State", &[("a<".into(), "A".into()), ("b".into(), "B".into())], "b");
        assert!(s.contains("<label for=\"f-state\">State</label>"));
        assert!(s.contains("<option value=\"a&lt;\">A</option><option value=\"b\" selected>B</option>"));
    }
}
