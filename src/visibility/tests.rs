use super::*;
use crate::auth::Role;
use crate::presence::Status;

fn identity(tenant: Option<&str>, groups: Option<&[&str]>) -> Identity {
    Identity {
        tenant: tenant.map(Arc::from),
        groups: groups.map(|g| g.iter().map(|g| Arc::from(*g)).collect()),
        ..Identity::user(Arc::from("viewer"), Role::Dashboard)
    }
}

fn audience(tenant: Option<&str>, groups: &[&str]) -> Audience {
    Audience::clone(&joining(&identity(tenant, Some(groups))))
}

fn update(now: Audience, before: Option<Audience>) -> Update {
    Update {
        user_id: Arc::from("driver"),
        status: Status::Online,
        version: 5,
        last_seen: 1,
        device_id: None,
        timestamp: 1,
        stated: Default::default(),
        audience: Arc::new(now),
        before: before.map(Arc::new),
    }
}

#[test]
fn tenants_never_see_each_other() {
    let acme = Viewer::of(&identity(Some("acme"), None));
    let none = Viewer::of(&identity(None, None));
    assert!(acme.sees(&audience(Some("acme"), &[])));
    assert!(!acme.sees(&audience(Some("globex"), &[])));
    assert!(!acme.sees(&audience(None, &[])));
    assert!(!none.sees(&audience(Some("acme"), &[])));
    assert!(none.sees(&audience(None, &["18"])));
}

#[test]
fn a_viewer_with_groups_sees_their_members_only() {
    let viewer = Viewer::of(&identity(Some("acme"), Some(&["18", "19"])));
    assert!(viewer.sees(&audience(Some("acme"), &["19", "40"])));
    assert!(!viewer.sees(&audience(Some("acme"), &["40"])));
    assert!(!viewer.sees(&audience(Some("acme"), &[])));
    // The same group id in another tenant is another group.
    assert!(!viewer.sees(&audience(Some("globex"), &["18"])));
}

#[test]
fn leaving_a_viewers_groups_hides_and_joining_shows() {
    let viewer = Viewer::of(&identity(None, Some(&["18"])));
    let in_18 = audience(None, &["18"]);
    let elsewhere = audience(None, &["40"]);
    assert_eq!(viewer.show(&update(in_18.clone(), None)), Show::Update);
    assert_eq!(
        viewer.show(&update(elsewhere.clone(), Some(in_18.clone()))),
        Show::Hide
    );
    assert_eq!(
        viewer.show(&update(in_18, Some(elsewhere.clone()))),
        Show::Update
    );
    assert_eq!(viewer.show(&update(elsewhere, None)), Show::Nothing);
}

#[test]
fn ids_are_scoped_by_tenant() {
    assert_eq!(&*scoped(None, "18"), "18");
    let acme_18 = scoped(Some("acme"), "18");
    assert_eq!(&*acme_18, "acme\u{1f}18");
    assert_eq!(unscoped(&acme_18), "18");
    assert_eq!(unscoped("18"), "18");
    assert_eq!(in_tenant(&acme_18, Some("acme")), Some("18"));
    assert_eq!(in_tenant(&acme_18, Some("acm")), None);
    assert_eq!(in_tenant(&acme_18, None), None);
    assert_eq!(in_tenant("18", None), Some("18"));
    assert_eq!(in_tenant("18", Some("acme")), None);
    // A colon is an ordinary character: a tenantless group "acme:18" is not acme's group 18.
    assert_ne!(scoped(None, "acme:18"), acme_18);
}

#[test]
fn a_token_with_groups_may_join_only_those() {
    assert!(may_join(&identity(None, None), "anything"));
    let listed = identity(None, Some(&["18"]));
    assert!(may_join(&listed, "18"));
    assert!(!may_join(&listed, "19"));
}
