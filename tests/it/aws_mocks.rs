//! What moto cannot show, driven through the real adapter code with
//! aws-smithy-mocks: IAM pagination (moto ignores MaxItems), the credential
//! report state machine, Organizations paging and account states.

use std::time::Duration;

use aws_sdk_iam::operation::generate_credential_report::GenerateCredentialReportOutput;
use aws_sdk_iam::operation::get_access_key_last_used::GetAccessKeyLastUsedOutput;
use aws_sdk_iam::operation::get_account_summary::GetAccountSummaryOutput;
use aws_sdk_iam::operation::get_credential_report::GetCredentialReportOutput;
use aws_sdk_iam::operation::list_access_keys::ListAccessKeysOutput;
use aws_sdk_iam::operation::list_users::ListUsersOutput;
use aws_sdk_iam::types::{
    AccessKeyLastUsed, AccessKeyMetadata, ReportStateType, StatusType, SummaryKeyType, User,
};
use aws_sdk_iam::Client as IamClient;
use aws_sdk_organizations::operation::list_accounts::ListAccountsOutput;
use aws_sdk_organizations::types::{Account, AccountState, AccountStatus};
use aws_sdk_organizations::Client as OrgClient;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::{Blob, DateTime};
use keywarden::aws::iam::{Iam, ReportClock, ReportError, ReportPolling, REPORT_POLL_STEP};
use keywarden::core::model::KeyStatus;
use keywarden::deadline::Budget;

const REPORT: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated
ci,arn:aws:iam::111122223333:user/ci,2024-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2024-01-02T00:00:00+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A
";

fn fast() -> ReportPolling {
    ReportPolling {
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_wait: Duration::from_secs(5),
    }
}

/// An IAM (awsQuery) error as it comes over the wire.
fn iam_error(status: u16, code: &'static str) -> impl Fn() -> HttpResponse + Send + Sync + 'static {
    move || {
        HttpResponse::new(
            StatusCode::try_from(status).unwrap(),
            SdkBody::from(format!(
                "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{code} happened</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
            )),
        )
    }
}

fn state(
    s: ReportStateType,
) -> impl Fn() -> GenerateCredentialReportOutput + Send + Sync + 'static {
    move || {
        GenerateCredentialReportOutput::builder()
            .state(s.clone())
            .build()
    }
}

fn report_content() -> GetCredentialReportOutput {
    GetCredentialReportOutput::builder()
        .content(Blob::new(REPORT))
        .build()
}

/// GenerateCredentialReport answers STARTED, the first GetCredentialReport
/// ReportInProgress, the next the report: the three rules, in that order,
/// and a client that plays them.
fn report_after_one_poll() -> ([Rule; 3], IamClient) {
    let started =
        mock!(IamClient::generate_credential_report).then_output(state(ReportStateType::Started));
    let in_progress = mock!(IamClient::get_credential_report)
        .then_http_response(iam_error(404, "ReportInProgress"));
    let get = mock!(IamClient::get_credential_report).then_output(report_content);
    let client = mock_client!(
        aws_sdk_iam,
        RuleMode::Sequential,
        [&started, &in_progress, &get]
    );
    ([started, in_progress, get], client)
}

#[tokio::test]
async fn credential_report_waits_from_started_through_in_progress_to_the_report() {
    let (rules, client) = report_after_one_poll();

    let users = Iam::from_client(client)
        .with_polling(fast())
        .credential_report()
        .await
        .unwrap();

    assert_eq!(users.len(), 1);
    assert_eq!(users[0].user_name, "ci");
    assert_eq!(rules.each_ref().map(Rule::num_calls), [1, 1, 1]);
}

#[tokio::test]
async fn after_the_first_report_accounts_poll_first_when_reports_became_ready() {
    let clock = std::sync::Arc::new(ReportClock::default());
    let polling = ReportPolling {
        initial_delay: Duration::from_millis(40),
        max_delay: Duration::from_secs(1),
        max_wait: Duration::from_secs(10),
    };
    assert_eq!(clock.quickest(), None);
    assert_eq!(
        clock.waits(&polling),
        (Duration::from_millis(40), Duration::from_millis(50)),
        "before any report: the fixed first wait, growing by a quarter"
    );
    // The first account: STARTED, in progress twice, then the report.
    let started =
        mock!(IamClient::generate_credential_report).then_output(state(ReportStateType::Started));
    let in_progress = mock!(IamClient::get_credential_report)
        .then_http_response(iam_error(404, "ReportInProgress"));
    let still = mock!(IamClient::get_credential_report)
        .then_http_response(iam_error(404, "ReportInProgress"));
    let get = mock!(IamClient::get_credential_report).then_output(report_content);
    let client = mock_client!(
        aws_sdk_iam,
        RuleMode::Sequential,
        [&started, &in_progress, &still, &get]
    );
    Iam::from_client(client)
        .with_polling(polling)
        .with_clock(clock.clone())
        .credential_report()
        .await
        .unwrap();
    let quickest = clock.quickest().expect("learned from the first report");
    assert!(
        quickest >= Duration::from_millis(40 + 50 + 62),
        "{quickest:?}"
    );
    let (first, then) = clock.waits(&polling);
    assert_eq!(then, REPORT_POLL_STEP, "then close polls");
    assert!(
        first >= quickest.mul_f64(0.89) && first < quickest,
        "{first:?}"
    );

    // The second account: its first poll waits for when reports became
    // ready (no poll at 40 ms wasted), and brings the report.
    let started =
        mock!(IamClient::generate_credential_report).then_output(state(ReportStateType::Started));
    let get = mock!(IamClient::get_credential_report).then_output(report_content);
    let client = mock_client!(aws_sdk_iam, RuleMode::Sequential, [&started, &get]);
    let t = tokio::time::Instant::now();
    Iam::from_client(client)
        .with_polling(polling)
        .with_clock(clock.clone())
        .credential_report()
        .await
        .unwrap();
    assert!(t.elapsed() >= first, "{:?} < {first:?}", t.elapsed());
    assert_eq!((started.num_calls(), get.num_calls()), (1, 1));
    // A slower report does not make the next accounts wait longer.
    let now = clock.quickest().unwrap();
    assert!(now <= quickest, "the second report was no slower: {now:?}");
    clock.read_after(quickest * 3);
    assert_eq!(clock.quickest(), Some(now));
}

#[tokio::test]
async fn a_fresh_report_costs_two_calls() {
    let complete =
        mock!(IamClient::generate_credential_report).then_output(state(ReportStateType::Complete));
    let get = mock!(IamClient::get_credential_report).then_output(report_content);
    let client = mock_client!(aws_sdk_iam, RuleMode::Sequential, [&complete, &get]);
    // Polling this slow would fail the test by time if a wait happened: COMPLETE means fetch at once.
    let polling = ReportPolling {
        initial_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(30),
        max_wait: Duration::from_secs(1),
    };
    let users = Iam::from_client(client)
        .with_polling(polling)
        .credential_report()
        .await
        .unwrap();
    assert_eq!(
        (users.len(), complete.num_calls(), get.num_calls()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn credential_report_limit_exceeded_and_expired_reports_are_retried() {
    let limited = mock!(IamClient::generate_credential_report)
        .then_http_response(iam_error(409, "LimitExceeded"));
    let complete =
        mock!(IamClient::generate_credential_report).then_output(state(ReportStateType::Complete));
    let expired =
        mock!(IamClient::get_credential_report).then_http_response(iam_error(410, "ReportExpired"));
    let regenerated = mock!(IamClient::generate_credential_report)
        .then_output(state(ReportStateType::Inprogress));
    let in_progress = mock!(IamClient::get_credential_report)
        .then_http_response(iam_error(404, "ReportInProgress"));
    let get = mock!(IamClient::get_credential_report).then_output(report_content);
    let client = mock_client!(
        aws_sdk_iam,
        RuleMode::Sequential,
        [
            &limited,
            &complete,
            &expired,
            &regenerated,
            &in_progress,
            &get
        ]
    );

    let users = Iam::from_client(client)
        .with_polling(fast())
        .credential_report()
        .await
        .unwrap();

    assert_eq!(users.len(), 1);
    assert_eq!(get.num_calls(), 1);
    assert_eq!(
        regenerated.num_calls(),
        1,
        "an expired report is generated again"
    );
}

#[tokio::test]
async fn credential_report_gives_up_after_max_wait() {
    let started =
        mock!(IamClient::generate_credential_report).then_output(state(ReportStateType::Started));
    let forever = mock!(IamClient::get_credential_report)
        .sequence()
        .http_response(iam_error(404, "ReportInProgress"))
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_iam, RuleMode::Sequential, [&started, &forever]);
    let polling = ReportPolling {
        max_wait: Duration::from_millis(50),
        ..fast()
    };
    let err = Iam::from_client(client)
        .with_polling(polling)
        .credential_report()
        .await
        .unwrap_err();
    assert!(matches!(err, ReportError::NotReady(_)), "{err}");
    assert!(forever.num_calls() >= 2);
}

#[tokio::test]
async fn credential_report_access_denied_is_reported_at_once_with_its_code() {
    let denied = mock!(IamClient::generate_credential_report)
        .then_http_response(iam_error(403, "AccessDenied"));
    let client = mock_client!(aws_sdk_iam, RuleMode::Sequential, [&denied]);
    match Iam::from_client(client)
        .with_polling(fast())
        .credential_report()
        .await
    {
        Err(ReportError::Aws(e)) => {
            assert_eq!(
                (e.operation, e.code.as_str()),
                ("iam:GenerateCredentialReport", "AccessDenied")
            );
            assert_eq!(e.message, "AccessDenied happened");
        }
        other => panic!("expected AccessDenied, got {other:?}"),
    }
}

#[tokio::test]
async fn a_truncated_report_is_an_error_not_a_shorter_list() {
    let complete =
        mock!(IamClient::generate_credential_report).then_output(state(ReportStateType::Complete));
    let get = mock!(IamClient::get_credential_report).then_output(|| {
        GetCredentialReportOutput::builder()
            .content(Blob::new(&REPORT[..REPORT.len() - 40]))
            .build()
    });
    let client = mock_client!(aws_sdk_iam, RuleMode::Sequential, [&complete, &get]);
    let err = Iam::from_client(client)
        .with_polling(fast())
        .credential_report()
        .await
        .unwrap_err();
    assert!(matches!(err, ReportError::Parse(_)), "{err}");
}

/// The scan's way (issue 24 item 1): each GetCredentialReport is made
/// holding a working slot; a ReportInProgress gives it back before the wait,
/// so an account waiting for its report holds none, and the poll that
/// brings the report keeps it.
#[tokio::test]
async fn a_report_poll_holds_a_working_slot_only_for_the_call_and_keeps_it_with_the_report() {
    let (rules, client) = report_after_one_poll();
    let iam = Iam::from_client(client).with_polling(ReportPolling {
        initial_delay: Duration::from_millis(300),
        max_delay: Duration::from_millis(300),
        max_wait: Duration::from_secs(5),
    });
    let slots = tokio::sync::Semaphore::new(1);
    let budget = far_budget();
    let poll = iam.credential_report_in(Some((&slots, &budget)));
    tokio::pin!(poll);
    // Generate, a wait, a poll answered ReportInProgress, a wait: the slot
    // is free during the waits.
    let mut free_while_waiting = false;
    let (users, slot) = loop {
        tokio::select! {
            r = &mut poll => break r.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if rules[1].num_calls() == 1 && rules[2].num_calls() == 0 {
                    free_while_waiting |= slots.available_permits() == 1;
                }
            }
        }
    };
    assert!(free_while_waiting, "the slot was held between polls");
    assert_eq!(users.len(), 1);
    assert!(slot.is_some());
    assert_eq!(slots.available_permits(), 0, "kept with the report");
    drop(slot);
    assert_eq!(slots.available_permits(), 1);
    assert_eq!(
        rules.each_ref().map(Rule::num_calls),
        [1, 1, 1],
        "no call more than without slots"
    );
}

fn far_budget() -> Budget {
    Budget::new(
        Duration::from_secs(120),
        tokio::time::Instant::now() + Duration::from_secs(900),
    )
}

/// A started account may wait long for a working slot behind others (the
/// owner look-ups of accounts with findings): that wait is neither the
/// report's (its patience, `max_wait`) nor the account's (its `Budget`).
/// Here the only slot is busy for 1.5 s, three times `max_wait`: the report
/// is still read, and the account's budget gets the wait back.
#[tokio::test]
async fn waiting_for_a_working_slot_counts_against_neither_the_report_nor_the_account() {
    let (_rules, client) = report_after_one_poll();
    let iam = Iam::from_client(client).with_polling(ReportPolling {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(100),
        max_wait: Duration::from_millis(500),
    });
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let busy = slots.clone().try_acquire_owned().unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(busy);
    });
    let budget = far_budget();
    let (users, slot) = iam
        .credential_report_in(Some((&slots, &budget)))
        .await
        .expect("the wait for a slot is not the report's");
    assert_eq!(users.len(), 1);
    assert!(slot.is_some());
    assert!(
        budget.waited() >= Duration::from_millis(1200),
        "{:?}",
        budget.waited()
    );
}

fn user(name: &str) -> User {
    User::builder()
        .user_name(name)
        .user_id(format!("AIDA{}", name.to_uppercase()))
        .arn(format!("arn:aws:iam::111122223333:user/{name}"))
        .path("/")
        .create_date(DateTime::from_secs(1_700_000_000))
        .build()
        .unwrap()
}

fn key(user: &str, id: &str, status: StatusType) -> AccessKeyMetadata {
    AccessKeyMetadata::builder()
        .user_name(user)
        .access_key_id(id)
        .status(status)
        .create_date(DateTime::from_secs(1_700_000_000))
        .build()
}

#[tokio::test]
async fn api_enumeration_follows_every_page_of_users_and_keys() {
    let users_page1 = mock!(IamClient::list_users)
        .match_requests(|r| r.marker().is_none())
        .then_output(|| {
            ListUsersOutput::builder()
                .users(user("a"))
                .is_truncated(true)
                .marker("m1")
                .build()
                .unwrap()
        });
    let users_page2 = mock!(IamClient::list_users)
        .match_requests(|r| r.marker() == Some("m1"))
        .then_output(|| {
            ListUsersOutput::builder()
                .users(user("b"))
                .is_truncated(false)
                .build()
                .unwrap()
        });
    let keys_a1 = mock!(IamClient::list_access_keys)
        .match_requests(|r| r.user_name() == Some("a") && r.marker().is_none())
        .then_output(|| {
            ListAccessKeysOutput::builder()
                .access_key_metadata(key("a", "AKIAAAAAAAAAAAAAAAA1", StatusType::Active))
                .is_truncated(true)
                .marker("k1")
                .build()
                .unwrap()
        });
    let keys_a2 = mock!(IamClient::list_access_keys)
        .match_requests(|r| r.user_name() == Some("a") && r.marker() == Some("k1"))
        .then_output(|| {
            ListAccessKeysOutput::builder()
                .access_key_metadata(key("a", "AKIAAAAAAAAAAAAAAAA2", StatusType::Inactive))
                .build()
                .unwrap()
        });
    let keys_b = mock!(IamClient::list_access_keys)
        .match_requests(|r| r.user_name() == Some("b"))
        .then_output(|| {
            ListAccessKeysOutput::builder()
                .set_access_key_metadata(Some(vec![]))
                .build()
                .unwrap()
        });
    let last_used = mock!(IamClient::get_access_key_last_used).then_compute_output(|r| {
        let used = r.access_key_id() == Some("AKIAAAAAAAAAAAAAAAA1");
        GetAccessKeyLastUsedOutput::builder()
            .access_key_last_used(
                AccessKeyLastUsed::builder()
                    .set_last_used_date(used.then(|| DateTime::from_secs(1_750_000_000)))
                    .service_name(if used { "s3" } else { "N/A" })
                    .region(if used { "us-east-1" } else { "N/A" })
                    .build()
                    .unwrap(),
            )
            .build()
    });
    let summary = mock!(IamClient::get_account_summary).then_output(|| {
        GetAccountSummaryOutput::builder()
            .summary_map(SummaryKeyType::AccountAccessKeysPresent, 1)
            .build()
    });
    let client = mock_client!(
        aws_sdk_iam,
        RuleMode::MatchAny,
        [
            &users_page1,
            &users_page2,
            &keys_a1,
            &keys_a2,
            &keys_b,
            &last_used,
            &summary
        ]
    );

    let users = Iam::from_client(client).enumerate_users().await.unwrap();

    let names: Vec<_> = users.iter().map(|u| u.user_name.as_str()).collect();
    assert_eq!(names, ["<root_account>", "a", "b"]);
    assert!(users[0].is_root && users[0].keys[0].status == KeyStatus::Active);
    let a = &users[1];
    assert_eq!(a.keys.len(), 2, "both pages of keys");
    assert_eq!(a.keys[0].last_used_service.as_deref(), Some("s3"));
    assert_eq!(a.keys[1].status, KeyStatus::Inactive);
    assert_eq!(a.keys[1].last_used_at, None);
    assert!(users[2].keys.is_empty());
    assert_eq!((users_page2.num_calls(), keys_a2.num_calls()), (1, 1));
}

fn org_account(id: &str, state: Option<AccountState>, status: Option<AccountStatus>) -> Account {
    Account::builder()
        .id(id)
        .name(format!("acct-{id}"))
        .email(format!("{id}@example.com"))
        .set_state(state)
        .set_status(status)
        .build()
}

#[tokio::test]
async fn account_listing_pages_and_keeps_only_active_accounts_by_state() {
    let page1 = mock!(OrgClient::list_accounts)
        .match_requests(|r| r.next_token().is_none())
        .then_output(|| {
            ListAccountsOutput::builder()
                .accounts(org_account(
                    "111111111111",
                    Some(AccountState::Active),
                    Some(AccountStatus::Active),
                ))
                .accounts(org_account(
                    "222222222222",
                    Some(AccountState::Suspended),
                    Some(AccountStatus::Active),
                ))
                .next_token("t1")
                .build()
        });
    let page2 = mock!(OrgClient::list_accounts)
        .match_requests(|r| r.next_token() == Some("t1"))
        .then_output(|| {
            ListAccountsOutput::builder()
                .accounts(org_account(
                    "333333333333",
                    Some(AccountState::PendingClosure),
                    None,
                ))
                .accounts(org_account(
                    "444444444444",
                    None,
                    Some(AccountStatus::Active),
                ))
                .build()
        });
    let client = mock_client!(aws_sdk_organizations, RuleMode::MatchAny, [&page1, &page2]);
    let orgs = keywarden::aws::organizations::Organizations::from_client(client);

    let mut pages = orgs.pages(keywarden::aws::organizations::Listing::All);
    let mut active = Vec::new();
    let mut inactive = 0;
    while let Some(p) = pages.next_page().await.unwrap() {
        active.extend(p.active.into_iter().map(|a| a.id.to_string()));
        inactive += p.inactive;
    }
    assert_eq!(
        active,
        ["111111111111", "444444444444"],
        "State wins over Status; Status only when State is absent"
    );
    assert_eq!(inactive, 2);
}

/// An STS (awsQuery) error as it comes over the wire.
fn sts_error(
    status: u16,
    code: &'static str,
    message: &'static str,
) -> impl Fn() -> HttpResponse + Send + Sync + 'static {
    move || {
        HttpResponse::new(
            StatusCode::try_from(status).unwrap(),
            SdkBody::from(format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
            )),
        )
    }
}

#[tokio::test]
async fn a_missing_member_role_or_a_trust_that_denies_is_access_denied_on_assume_role() {
    // Real STS answers both the same way (moto cannot show either: it lets anyone assume any role).
    for message in [
        "User: arn:aws:sts::111122223333:assumed-role/keywarden/x is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::444455556666:role/KeywardenScanRole",
        "Roles may not be assumed by root accounts.",
    ] {
        let denied = mock!(aws_sdk_sts::Client::assume_role).then_http_response(sts_error(403, "AccessDenied", message));
        let client = mock_client!(aws_sdk_sts, RuleMode::Sequential, [&denied]);
        let err = keywarden::aws::sts::Sts::from_client(client)
            .assume_role(
                "arn:aws:iam::444455556666:role/KeywardenScanRole",
                keywarden::aws::sts::SCAN_SESSION,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!((err.operation, err.code.as_str(), err.message.as_str()), ("sts:AssumeRole", "AccessDenied", message));
        assert!(err.is_access_denied());
    }
}

#[tokio::test]
async fn an_error_body_in_another_xml_shape_still_yields_its_code() {
    // Some endpoints wrap errors in <Errors>; the code is read from the raw body.
    let odd = mock!(IamClient::list_account_aliases).then_http_response(|| {
        HttpResponse::new(
            StatusCode::try_from(403).unwrap(),
            SdkBody::from("<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>nope</Message></Error></Errors></ErrorResponse>"),
        )
    });
    let bare = mock!(IamClient::list_account_aliases).then_http_response(|| {
        HttpResponse::new(StatusCode::try_from(403).unwrap(), SdkBody::from(""))
    });
    let client = mock_client!(aws_sdk_iam, RuleMode::Sequential, [&odd, &bare]);
    let iam = Iam::from_client(client);
    let e = iam.account_alias().await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("AccessDenied", "nope")
    );
    let e = iam.account_alias().await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("AccessDenied", "HTTP 403")
    );
}
