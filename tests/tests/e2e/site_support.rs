//! What the site publisher's end-to-end tests share.

use crate::fixture::{self, Fixture};

use std::sync::Arc;

use settings::Settings;
use tests::TestBus;
use tests::config::health_addr;

/// A test bus with a site-publisher whose health answers on `health`, and the settings that
/// consumer runs with: the bus names from the test bus, the store (a released f43), streams
/// and site from the site publisher's fixture.
pub fn site_on_bus(health: std::net::SocketAddr) -> (TestBus, Fixture, Arc<Settings>) {
    let bus = TestBus::new().consumer("site-publisher", health_addr(health));
    let f = fixture::fixture("Produced automatically.");
    let mut settings = bus.settings();
    settings.store = f.settings.store.clone();
    settings.streams = f.settings.streams.clone();
    settings.site = f.settings.site.clone();
    (bus, f, Arc::new(settings))
}
