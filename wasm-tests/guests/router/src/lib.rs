//! The least a cluster-picking filter can do: read `:authority` and `:path`, look the host up
//! in a map and set one request header. The benchmark compares the plugin against it (and the
//! noop filter) in one run. Configuration: one `host=upstream` per line.
#![cfg(target_arch = "wasm32")]

use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Router { routes: Rc::default() })
    });
}}

struct Router {
    routes: Rc<HashMap<String, String>>,
}

impl Context for Router {}

impl RootContext for Router {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        let routes = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(host, upstream)| (host.to_string(), upstream.to_string()))
            .collect();
        self.routes = Rc::new(routes);
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            routes: self.routes.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    routes: Rc<HashMap<String, String>>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let authority = self
            .get_http_request_header(":authority")
            .unwrap_or_default();
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let host = authority.split(':').next().unwrap_or("");
        if let Some(upstream) = self.routes.get(host).filter(|_| path.starts_with('/')) {
            self.set_http_request_header("x-fleetgate-upstream", Some(upstream));
        }
        Action::Continue
    }
}
