//! The Mappings page's contacts: a customer's contacts as a searchable list (a datalist the
//! manual-match forms use for an organization's default contact and for matching a user).

use std::fmt::Write;

use super::Ctx;
use super::html::{self, esc};

/// The "contacts of a customer" picker and, when a customer is chosen, its contacts.
pub async fn section(ctx: &Ctx<'_>, conn: &str, customer: &str, customer_name: Option<&str>) -> String {
    let shown = match customer_name {
        Some(n) => format!("{n} ({customer})"),
        None => customer.to_string(),
    };
    let mut h = format!(
        "<form method=\"get\" action=\"/mappings\" class=\"filters\" id=\"contacts-of\">\
<input type=\"hidden\" name=\"connection\" value=\"{conn}\">\
<div><label for=\"c-cust\">Customer whose contacts to search (type to search)</label>\
<input id=\"c-cust\" name=\"customer\" list=\"customers\" value=\"{cust}\"></div>\
<div><button type=\"submit\" id=\"show-contacts\">Show contacts</button></div></form>",
        conn = esc(conn),
        cust = esc(customer),
    );
    if customer.is_empty() {
        h.push_str("<p><small>Choose a customer above to search its contacts in the forms below.</small></p>");
        return h;
    }
    let contacts = match ctx.engine().connectors.get(conn) {
        Some(k) => k.list_contacts(customer).await.map_err(|e| e.to_string()),
        None => Err("no connector".into()),
    };
    match contacts {
        Err(e) => h.push_str(&html::notice(false, &format!("Cannot list the contacts of customer {shown}: {e}"))),
        Ok(list) if list.is_empty() => {
            let _ = write!(h, "<p id=\"no-contacts\">Customer {} has no contacts.</p>", esc(&shown));
        }
        Ok(list) => {
            h.push_str("<datalist id=\"contacts\">");
            for c in &list {
                let label = match &c.email {
                    Some(e) => format!("{} <{e}>", c.name),
                    None => c.name.clone(),
                };
                let _ = write!(h, "<option value=\"{}\">{}</option>", esc(&c.id), esc(&label));
            }
            let _ = write!(
                h,
                "</datalist><table id=\"contacts-table\"><caption>Contacts of customer {}</caption><thead><tr>\
<th scope=\"col\">Name</th><th scope=\"col\">E-mail</th><th scope=\"col\">Contact id</th></tr></thead><tbody>",
                esc(&shown)
            );
            for c in &list {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&c.name),
                    esc(c.email.as_deref().unwrap_or("")),
                    esc(&c.id)
                );
            }
            h.push_str("</tbody></table>");
        }
    }
    h
}

/// The form that matches an upstream user (by e-mail) to one of the target's contacts.
pub fn user_match_form(ctx: &Ctx<'_>, conn_in_url: &str, customer: &str) -> String {
    let hidden = if customer.is_empty() {
        String::new()
    } else {
        format!("<input type=\"hidden\" name=\"customer_id\" value=\"{}\">", esc(customer))
    };
    format!(
        "<h3>Match a user to a contact</h3><form method=\"post\" action=\"/mappings/{conn_in_url}/user-match\" class=\"filters\" id=\"user-match\">{csrf}{hidden}\
<div><label for=\"u-email\">User e-mail</label><input id=\"u-email\" name=\"email\" type=\"email\" required></div>\
<div><label for=\"u-contact\">Contact (type to search)</label><input id=\"u-contact\" name=\"contact_id\" list=\"contacts\" required></div>\
<div><button type=\"submit\">Match user</button></div></form>",
        csrf = ctx.csrf(),
    )
}
