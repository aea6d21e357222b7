//! Fortnight's end-to-end tests, one binary: the consumers against the real RabbitMQ, `ostree`,
//! `qemu-img`, nginx and Chromium. One binary links once (a test binary holds every
//! dependency), and its tests run in parallel; each test has its own exchange, queues, store
//! and broker users, so they never see each other's messages. Tests that restart or
//! reconfigure the whole broker live apart, in `bus_disruptive.rs`.

#[path = "../../../consumers/site-publisher/tests/fixture/mod.rs"]
mod fixture;
mod images_support;
mod release_support;
mod site_support;

mod bus_runtime;
mod client_view;
mod deploy;
mod deploy_image;
mod images;
mod images_compose;
mod images_staging;
mod images_suite;
mod karma_votes;
mod release_bad_input;
mod release_cycle;
mod release_once;
mod release_overrides;
mod release_skips;
mod release_switch;
mod signing;
mod site_browser;
mod site_burst;
mod site_bus;
mod site_startup;
mod stale_streams;
mod timer_ticks;
mod trust;
mod workspace;
