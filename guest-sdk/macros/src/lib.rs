//! The `#[flow]` attribute of `baton-guest`; use it through
//! `baton_guest::flow` (or `baton_guest::prelude::*`).

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, MetaNameValue, Token};

/// Turns `fn name(ctx: &mut Ctx, input: I) -> Result<O, FlowError>` into a
/// Baton flow named `name` (with `_` turned into `-`) and declares its
/// properties. See `baton_guest::flow` for the attributes.
#[proc_macro_attribute]
pub fn flow(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// The properties of one flow, with their defaults.
struct Properties {
    other_server_retry: bool,
    begin_checkpoint_use: bool,
    max_retries: u32,
    retry_interval_ms: u64,
    backoff: f64,
    max_retry_interval_ms: Option<u64>,
    resources: Vec<String>,
    retention_ms: Option<u64>,
}

impl Default for Properties {
    fn default() -> Self {
        Properties {
            other_server_retry: false,
            begin_checkpoint_use: true,
            max_retries: 3,
            retry_interval_ms: 10_000,
            backoff: 1.0,
            max_retry_interval_ms: None,
            resources: Vec::new(),
            retention_ms: None,
        }
    }
}

const KNOWN: &str = "other_server_retry, begin_checkpoint, max_retries, \
                     retry_interval, backoff, max_retry_interval, resources, retention";

fn expand(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let function: ItemFn = syn::parse2(item)?;
    let properties = parse_properties(attr)?;
    check_signature(&function)?;

    let ident = &function.sig.ident;
    let name = ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name).replace('_', "-");
    let Properties {
        other_server_retry,
        begin_checkpoint_use,
        max_retries,
        retry_interval_ms,
        backoff,
        max_retry_interval_ms,
        resources,
        retention_ms,
    } = properties;
    // Not a field of the WIT `properties` record: that would make every
    // component built before it fail to load. A custom section of the
    // core module, which the server reads at deploy.
    let retention = retention_ms.map(|ms| {
        quote! {
            #[cfg(target_arch = "wasm32")]
            #[unsafe(link_section = "baton:retention")]
            #[used]
            static BATON_RETENTION_MS: [u8; 8] = (#ms as u64).to_le_bytes();
        }
    });
    let begin_checkpoint = if begin_checkpoint_use {
        quote!(::baton_guest::__private::BeginCheckpoint::Use)
    } else {
        quote!(::baton_guest::__private::BeginCheckpoint::NotUse)
    };
    let max_retry_interval_ms = match max_retry_interval_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };

    Ok(quote! {
        #function

        const _: () = {
            #retention

            struct BatonFlow;

            impl ::baton_guest::__private::Guest for BatonFlow {
                fn properties() -> ::baton_guest::__private::Properties {
                    ::baton_guest::__private::Properties {
                        name: ::std::string::String::from(#name),
                        other_server_retry: #other_server_retry,
                        begin_checkpoint: #begin_checkpoint,
                        max_retries: #max_retries,
                        retry_interval_ms: #retry_interval_ms,
                        backoff_factor: #backoff,
                        max_retry_interval_ms: #max_retry_interval_ms,
                        resources: ::std::vec![#(::std::string::String::from(#resources)),*],
                    }
                }

                fn run(
                    input: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::baton_guest::__private::RunError> {
                    ::baton_guest::__private::run(&input, #ident)
                }
            }

            // `#[macro_export]`, so at the SDK's root.
            ::baton_guest::__export_flow_impl!(
                BatonFlow with_types_in ::baton_guest::__private::bindings
            );
        };
    })
}

/// Checks what the macro relies on; the argument and result types are left
/// to the compiler, whose messages name the missing trait.
fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    if let Some(asyncness) = sig.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            "#[flow] functions cannot be async",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "#[flow] functions cannot be generic",
        ));
    }
    if sig.inputs.len() != 2 || matches!(sig.output, syn::ReturnType::Default) {
        return Err(syn::Error::new(
            sig.span(),
            "#[flow] expects `fn name(ctx: &mut Ctx, input: I) -> Result<O, FlowError>`",
        ));
    }
    if let Some(receiver) = sig.receiver() {
        return Err(syn::Error::new(
            receiver.span(),
            "#[flow] functions cannot take `self`",
        ));
    }
    Ok(())
}

fn parse_properties(attr: proc_macro2::TokenStream) -> syn::Result<Properties> {
    let args = syn::parse::Parser::parse2(
        Punctuated::<MetaNameValue, Token![,]>::parse_terminated,
        attr,
    )
    .map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("#[flow] expects `key = value` pairs ({KNOWN}): {e}"),
        )
    })?;

    let mut properties = Properties::default();
    let mut seen = Vec::new();
    for arg in args {
        let key = arg
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        if seen.contains(&key) {
            return Err(syn::Error::new(
                arg.path.span(),
                format!("#[flow]: `{key}` is given twice"),
            ));
        }
        let value = &arg.value;
        match key.as_str() {
            "other_server_retry" => properties.other_server_retry = bool_value(value, &key)?,
            "begin_checkpoint" => {
                properties.begin_checkpoint_use = match str_value(value, &key)?.as_str() {
                    "use" => true,
                    "not use" => false,
                    other => {
                        return Err(syn::Error::new(
                            value.span(),
                            format!(
                                "#[flow]: begin_checkpoint must be \"use\" or \"not use\", not {other:?}"
                            ),
                        ));
                    }
                }
            }
            "max_retries" => properties.max_retries = int_value(value, &key)?,
            "retry_interval" => properties.retry_interval_ms = duration_value(value, &key)?,
            "max_retry_interval" => {
                properties.max_retry_interval_ms = Some(duration_value(value, &key)?)
            }
            "backoff" => properties.backoff = float_value(value, &key)?,
            "resources" => properties.resources = resources_value(value, &key)?,
            "retention" => properties.retention_ms = Some(duration_value(value, &key)?),
            _ => {
                return Err(syn::Error::new(
                    arg.path.span(),
                    format!(
                        "#[flow]: unknown property `{}`; expected one of {KNOWN}",
                        path_text(&arg.path)
                    ),
                ));
            }
        }
        seen.push(key);
    }

    if let Some(max) = properties.max_retry_interval_ms
        && max < properties.retry_interval_ms
    {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[flow]: max_retry_interval must not be shorter than retry_interval",
        ));
    }
    Ok(properties)
}

fn path_text(path: &syn::Path) -> String {
    quote!(#path).to_string().replace(' ', "")
}

fn literal<'a>(value: &'a Expr, key: &str, expected: &str) -> syn::Result<&'a Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Ok(lit),
        _ => Err(syn::Error::new(
            value.span(),
            format!("#[flow]: {key} expects {expected}"),
        )),
    }
}

/// `["http://host", "folder:/path", "connection:name"]`: each entry must
/// name its kind, so a typo is a compile error rather than a silent miss.
fn resources_value(value: &Expr, key: &str) -> syn::Result<Vec<String>> {
    let Expr::Array(array) = value else {
        return Err(syn::Error::new(
            value.span(),
            format!(
                "#[flow]: `{key}` expects a list of strings, e.g. [\"http://api.example.com\", \"folder:/data\", \"flow:review\"]"
            ),
        ));
    };
    let mut resources = Vec::new();
    for element in &array.elems {
        let resource = str_value(element, key)?;
        let known = ["http://", "https://", "folder:/", "connection:", "flow:"];
        if !known.iter().any(|prefix| resource.starts_with(prefix)) {
            return Err(syn::Error::new(
                element.span(),
                format!(
                    "#[flow]: resource {resource:?} must start with http://, https://, folder:/, connection: or flow:"
                ),
            ));
        }
        resources.push(resource);
    }
    Ok(resources)
}

fn bool_value(value: &Expr, key: &str) -> syn::Result<bool> {
    match literal(value, key, "`true` or `false`")? {
        Lit::Bool(b) => Ok(b.value),
        _ => Err(syn::Error::new(
            value.span(),
            format!("#[flow]: {key} expects `true` or `false`"),
        )),
    }
}

fn str_value(value: &Expr, key: &str) -> syn::Result<String> {
    match literal(value, key, "a string")? {
        Lit::Str(s) => Ok(s.value()),
        _ => Err(syn::Error::new(
            value.span(),
            format!("#[flow]: {key} expects a string"),
        )),
    }
}

fn int_value(value: &Expr, key: &str) -> syn::Result<u32> {
    match literal(value, key, "a whole number")? {
        Lit::Int(i) => i.base10_parse(),
        _ => Err(syn::Error::new(
            value.span(),
            format!("#[flow]: {key} expects a whole number"),
        )),
    }
}

fn float_value(value: &Expr, key: &str) -> syn::Result<f64> {
    let expected = "a number of at least 1.0 (1.0 = constant interval)";
    let factor = match literal(value, key, expected)? {
        Lit::Float(f) => f.base10_parse::<f64>()?,
        Lit::Int(i) => i.base10_parse::<u32>()?.into(),
        _ => {
            return Err(syn::Error::new(
                value.span(),
                format!("#[flow]: {key} expects {expected}"),
            ));
        }
    };
    if !(factor.is_finite() && factor >= 1.0) {
        return Err(syn::Error::new(
            value.span(),
            format!("#[flow]: {key} expects {expected}"),
        ));
    }
    Ok(factor)
}

fn duration_value(value: &Expr, key: &str) -> syn::Result<u64> {
    let expected = "a duration such as \"250ms\", \"10s\", \"2m\", \"1h\" or \"7d\"";
    let text = match literal(value, key, expected)? {
        Lit::Str(s) => s.value(),
        _ => {
            return Err(syn::Error::new(
                value.span(),
                format!("#[flow]: {key} expects {expected}"),
            ));
        }
    };
    parse_duration_ms(&text).ok_or_else(|| {
        syn::Error::new(
            value.span(),
            format!("#[flow]: {key} expects {expected}, not {text:?}"),
        )
    })
}

/// Milliseconds in `"250ms"`, `"10s"`, `"2m"`, `"1h"` or `"7d"`.
fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("7d"), Some(604_800_000));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("10"), None);
        assert_eq!(parse_duration_ms("s"), None);
        assert_eq!(parse_duration_ms("1.5s"), None);
        assert_eq!(parse_duration_ms("3w"), None);
    }

    #[test]
    fn defaults_and_errors() {
        let p = parse_properties(quote!()).unwrap();
        assert!(!p.other_server_retry && p.begin_checkpoint_use);
        assert_eq!((p.max_retries, p.retry_interval_ms), (3, 10_000));
        assert_eq!(p.backoff, 1.0);

        let p = parse_properties(quote!(
            other_server_retry = true,
            begin_checkpoint = "not use",
            max_retries = 5,
            retry_interval = "200ms",
            backoff = 2.0,
            max_retry_interval = "1m"
        ))
        .unwrap();
        assert!(p.other_server_retry && !p.begin_checkpoint_use);
        assert_eq!((p.max_retries, p.retry_interval_ms), (5, 200));
        assert_eq!((p.backoff, p.max_retry_interval_ms), (2.0, Some(60_000)));

        for bad in [
            quote!(retries = 3),
            quote!(max_retries = "3"),
            quote!(retry_interval = "10"),
            quote!(begin_checkpoint = "sometimes"),
            quote!(backoff = 0.5),
            quote!(max_retries = 1, max_retries = 2),
            quote!(retry_interval = "1m", max_retry_interval = "10s"),
            quote!(other_server_retry),
        ] {
            assert!(parse_properties(bad.clone()).is_err(), "{bad} accepted");
        }
    }
}
