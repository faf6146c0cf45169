//! The injector's rules on small templates; realistic manifests are golden-tested in
//! `aggregator/tests/inject_golden.rs`.

use super::*;
use crate::inject::node::from_yaml;

fn template(yaml: &str) -> Node {
    from_yaml(yaml).unwrap()
}

fn injected(yaml: &str) -> Node {
    match inject(
        &template(yaml),
        &InjectSettings::default(),
        Selection::Annotated,
    ) {
        Ok(Outcome::Injected(n)) => n,
        other => panic!("not injected: {other:?}"),
    }
}

fn refused(yaml: &str) -> String {
    inject(
        &template(yaml),
        &InjectSettings::default(),
        Selection::Annotated,
    )
    .expect_err("should be refused")
    .to_string()
}

fn env_of<'a>(pod: &'a Node, list: &str, i: usize, name: &str) -> &'a Node {
    pod.at(&["spec", list]).and_then(Node::as_seq).unwrap()[i]
        .get("env")
        .and_then(Node::as_seq)
        .unwrap()
        .iter()
        .find(|e| e.str_at("name") == Some(name))
        .unwrap()
}

const APP: &str = "
metadata:
  annotations:
    dwell.io/inject: enabled
    dwell.io/queue: jobs
spec:
  initContainers: [{name: migrate, image: m}]
  containers: [{name: app, image: a}]
  volumes: [{name: data, emptyDir: {}}]
";

#[test]
fn the_sidecar_and_its_volume_go_first() {
    let pod = injected(APP);
    let init = pod
        .at(&["spec", "initContainers"])
        .and_then(Node::as_seq)
        .unwrap();
    assert_eq!(init.len(), 2);
    assert_eq!(init[0].str_at("name"), Some(sidecar::NAME));
    assert_eq!(init[1].str_at("name"), Some("migrate"));
    let volumes = pod.at(&["spec", "volumes"]).and_then(Node::as_seq).unwrap();
    assert_eq!(volumes[0].str_at("name"), Some(sidecar::PODINFO_VOLUME));
    assert_eq!(volumes[1].str_at("name"), Some(sidecar::TOKEN_VOLUME));
    assert_eq!(volumes[2].str_at("name"), Some("data"));
    // Nothing else moved.
    assert_eq!(
        pod.at(&["spec", "containers"]),
        template(APP).at(&["spec", "containers"])
    );
    assert_eq!(pod.get("metadata"), template(APP).get("metadata"));
}

#[test]
fn twice_is_once_and_a_sidecar_present_is_never_touched() {
    let once = injected(APP);
    let twice = inject(&once, &InjectSettings::default(), Selection::All).unwrap();
    assert_eq!(twice, Outcome::Skipped(Skip::AlreadyInjected));
    // Even with annotations that would be refused.
    let hand_made = "metadata: {annotations: {dwell.io/queu: x}}\nspec:\n  containers: [{name: dwell-sidecar}]\n";
    assert_eq!(
        inject(
            &template(hand_made),
            &InjectSettings::default(),
            Selection::All
        )
        .unwrap(),
        Outcome::Skipped(Skip::AlreadyInjected)
    );
}

#[test]
fn selection_and_opt_out() {
    let plain = "spec: {containers: [{name: app}]}";
    let settings = InjectSettings::default();
    assert_eq!(
        inject(&template(plain), &settings, Selection::Annotated).unwrap(),
        Outcome::Skipped(Skip::NotSelected)
    );
    // --all still needs the settings a sidecar cannot run without.
    assert!(refused_all(plain).starts_with("dwell.io/queue: "));
    let off =
        "metadata: {annotations: {dwell.io/inject: disabled}}\nspec: {containers: [{name: a}]}";
    assert_eq!(
        inject(&template(off), &settings, Selection::All).unwrap(),
        Outcome::Skipped(Skip::Disabled)
    );
}

fn refused_all(yaml: &str) -> String {
    inject(&template(yaml), &InjectSettings::default(), Selection::All)
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn a_literal_url_is_split_between_the_app_and_the_tap() {
    let yaml = "
metadata:
  annotations: {dwell.io/inject: enabled, dwell.io/amqp-url-env: AMQP_URL}
spec:
  containers:
    - name: app
      env:
        - {name: OTHER, value: amqp://x:y@elsewhere/}
        - {name: AMQP_URL, value: 'amqp://app:s3cret@rabbitmq.mq.svc:5672/orders'}
    - name: worker
      env: [{name: AMQP_URL, value: 'amqp://w:pw@rabbitmq.mq.svc/orders'}]
";
    let pod = injected(yaml);
    let app = env_of(&pod, "containers", 0, "AMQP_URL");
    assert_eq!(
        app.str_at("value"),
        Some("amqp://app:s3cret@127.0.0.1:5672/orders")
    );
    let worker = env_of(&pod, "containers", 1, "AMQP_URL");
    assert_eq!(
        worker.str_at("value"),
        Some("amqp://w:pw@127.0.0.1:5672/orders")
    );
    let other = env_of(&pod, "containers", 0, "OTHER");
    assert_eq!(other.str_at("value"), Some("amqp://x:y@elsewhere/"));
    let upstream = env_of(&pod, "initContainers", 0, "DWELL_TAP_UPSTREAM");
    assert_eq!(
        upstream.str_at("value"),
        Some("amqp://rabbitmq.mq.svc:5672")
    );
    // The tap reports every queue it sees: no dwell.io/queue needed.
    let sidecar = &pod
        .at(&["spec", "initContainers"])
        .and_then(Node::as_seq)
        .unwrap()[0];
    let names: Vec<_> = sidecar
        .get("env")
        .and_then(Node::as_seq)
        .unwrap()
        .iter()
        .filter_map(|e| e.str_at("name"))
        .collect();
    assert!(!names.contains(&"DWELL_QUEUE"));
}

#[test]
fn a_secret_url_is_repointed_to_another_key_without_reading_it() {
    let base = "
spec:
  containers:
    - name: app
      env:
        - name: AMQP_URL
          valueFrom: {secretKeyRef: {name: amqp, key: url}}
";
    let with = |annotations: &str| {
        format!(
            "metadata:\n  annotations: {{dwell.io/inject: enabled, dwell.io/amqp-url-env: AMQP_URL{annotations}}}\n{base}"
        )
    };
    let err = refused(&with(""));
    assert!(err.starts_with("dwell.io/tap-url-key: is required: AMQP_URL in container \"app\" comes from Secret \"amqp\""), "{err}");
    let err = refused(&with(", dwell.io/tap-url-key: url-tap"));
    assert!(
        err.starts_with("dwell.io/tap-upstream: is required"),
        "{err}"
    );
    let pod = injected(&with(
        ", dwell.io/tap-url-key: url-tap, dwell.io/tap-upstream: 'amqps://rabbit.example.com:5671'",
    ));
    let app = env_of(&pod, "containers", 0, "AMQP_URL");
    assert_eq!(
        app.at(&["valueFrom", "secretKeyRef"]),
        Some(&template("{name: amqp, key: url-tap}"))
    );
    let upstream = env_of(&pod, "initContainers", 0, "DWELL_TAP_UPSTREAM");
    assert_eq!(
        upstream.str_at("value"),
        Some("amqps://rabbit.example.com:5671")
    );
}

#[test]
fn refusals_name_the_annotation_and_never_the_url() {
    let with_env = |env: &str| {
        format!(
            "metadata: {{annotations: {{dwell.io/inject: enabled, dwell.io/amqp-url-env: AMQP_URL}}}}\n\
             spec: {{containers: [{{name: app, {env}}}]}}\n"
        )
    };
    let missing = refused(&with_env("envFrom: [{secretRef: {name: s}}]"));
    assert!(
        missing.starts_with("dwell.io/amqp-url-env: no container sets AMQP_URL in env"),
        "{missing}"
    );
    assert!(missing.contains("envFrom"), "{missing}");
    let not_amqp = refused(&with_env(
        "env: [{name: AMQP_URL, value: 'http://u:s3cret@x'}]",
    ));
    assert!(
        not_amqp.starts_with("dwell.io/amqp-url-env: AMQP_URL in container \"app\" is not"),
        "{not_amqp}"
    );
    assert!(!not_amqp.contains("s3cret"));
    let field = refused(&with_env(
        "env: [{name: AMQP_URL, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]",
    ));
    assert!(field.starts_with("dwell.io/amqp-url-env: "), "{field}");
    let two = "metadata: {annotations: {dwell.io/inject: enabled, dwell.io/amqp-url-env: U}}\n\
               spec: {containers: [{name: a, env: [{name: U, value: 'amqp://a'}]}, {name: b, env: [{name: U, value: 'amqp://b'}]}]}";
    assert!(refused(two).contains("different brokers"));
    let clash = "metadata: {annotations: {dwell.io/inject: enabled, dwell.io/queue: q}}\n\
                 spec: {containers: [{name: a}], volumes: [{name: dwell-podinfo, emptyDir: {}}]}";
    assert!(refused(clash).starts_with("spec.volumes: "));
    assert!(
        refused("metadata: {annotations: {dwell.io/inject: enabled}}\nspec: [1]")
            .starts_with("spec: ")
    );
}

#[test]
fn a_url_already_on_the_tap_needs_only_the_upstream() {
    let yaml = "metadata: {annotations: {dwell.io/inject: enabled, dwell.io/amqp-url-env: U, \
                dwell.io/tap-upstream: 'amqp://rabbit:5672'}}\n\
                spec: {containers: [{name: a, env: [{name: U, value: 'amqp://u:p@127.0.0.1:5672/'}]}]}";
    let pod = injected(yaml);
    assert_eq!(
        env_of(&pod, "containers", 0, "U").str_at("value"),
        Some("amqp://u:p@127.0.0.1:5672/")
    );
    assert_eq!(
        env_of(&pod, "initContainers", 0, "DWELL_TAP_UPSTREAM").str_at("value"),
        Some("amqp://rabbit:5672")
    );
}

#[test]
fn annotations_override_the_injectors_settings() {
    let yaml = "metadata: {annotations: {dwell.io/inject: enabled, dwell.io/queue: q, \
                dwell.io/image: 'mirror.local/dwell-sidecar:0.1.0', dwell.io/aggregator: 'https://agg:50051'}}\n\
                spec: {containers: [{name: a}]}";
    let pod = injected(yaml);
    let sidecar = &pod
        .at(&["spec", "initContainers"])
        .and_then(Node::as_seq)
        .unwrap()[0];
    assert_eq!(
        sidecar.str_at("image"),
        Some("mirror.local/dwell-sidecar:0.1.0")
    );
    assert_eq!(
        env_of(&pod, "initContainers", 0, "DWELL_AGGREGATOR").str_at("value"),
        Some("https://agg:50051")
    );
}
