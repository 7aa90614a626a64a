//! The router on real threads and sockets (datagram pairs stand in for the TUN devices, which
//! need root): packets cross both ways, to the right side, never before their delay, and an
//! outage stops them.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use line_netem::router::Router;
use line_netem::{Direction, Netem, Profile};

#[test]
fn packets_cross_both_ways_after_their_delay_and_not_during_an_outage() {
    let (near_app, near_port) = UnixDatagram::pair().unwrap();
    let (far_app, far_port) = UnixDatagram::pair().unwrap();
    let profile = Profile {
        delay: Duration::from_millis(20),
        ..Profile::LAN
    };
    let router = Router::start(near_port, far_port, Netem::new(profile, 1)).unwrap();
    let mut buf = [0; 2048];
    for (from, to, payload) in [(&near_app, &far_app, b"up"), (&far_app, &near_app, b"dn")] {
        let sent = Instant::now();
        from.send(payload).unwrap();
        let n = to.recv(&mut buf).unwrap();
        assert!(
            sent.elapsed() >= profile.delay,
            "a packet arrived before its delay"
        );
        assert_eq!(&buf[..n], payload);
    }

    router.with_link(|link, now| link.start_outage(now, Duration::from_secs(3600)));
    near_app.send(b"lost").unwrap();
    far_app
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        far_app.recv(&mut buf).is_err(),
        "a packet crossed during the outage"
    );
    let up = router.with_link(|link, _| link.stats(Direction::Up));
    assert_eq!((up.packets, up.delivered, up.outage_dropped), (2, 1, 1));
    assert_eq!(router.io_errors(), 0);
}
