use crate::common::*;
use msgraph_emulator::NewSite;

#[tokio::test]
async fn sites_search_finds_sites_by_name() {
    let env = env().await;
    env.ctl
        .create_site(NewSite {
            display_name: "Marketing Hub".into(),
            ..Default::default()
        })
        .unwrap();
    let found = env.get_json("/sites?search=marketing").await;
    let v = found["value"].as_array().unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["displayName"], "Marketing Hub");
    let all = env.get_json("/sites?search=*").await;
    assert_eq!(all["value"].as_array().unwrap().len(), 2);
    env.shutdown().await;
}

#[tokio::test]
async fn site_by_id_and_its_document_libraries() {
    let env = env().await;
    let s = env
        .ctl
        .create_site(NewSite {
            display_name: "Legal".into(),
            libraries: vec!["Documents".into(), "Contracts".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(s.id.split(',').count(), 3);
    let site = env.get_json(&format!("/sites/{}", s.id)).await;
    assert_eq!(site["displayName"], "Legal");
    assert!(site["webUrl"].as_str().unwrap().ends_with("/sites/legal"));
    let drives = env.get_json(&format!("/sites/{}/drives", s.id)).await;
    let v = drives["value"].as_array().unwrap();
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(|d| d["driveType"] == "documentLibrary"));
    assert_eq!(v[1]["name"], "Contracts");
    let def = env.get_json(&format!("/sites/{}/drive", s.id)).await;
    assert_eq!(def["id"], v[0]["id"]);
    env.ctl
        .put_file(v[1]["id"].as_str().unwrap(), "/nda.txt", "confidential")
        .unwrap();
    let (items, _, _) = env
        .delta_round(&format!(
            "/sites/{}/drives/{}/root/delta",
            s.id,
            v[1]["id"].as_str().unwrap()
        ))
        .await;
    assert!(names(&items).contains(&"nda.txt".to_string()));
    env.shutdown().await;
}
