use super::*;

fn s(x: &str) -> String {
    sanitize(x)
}

#[test]
fn private_key_blocks() {
    let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nabcDEF==\n-----END RSA PRIVATE KEY-----";
    let out = s(&format!("loaded {key} ok"));
    assert_eq!(
        out,
        "loaded -----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY----- ok"
    );
    // Escaped newlines inside a repr, and a block cut before its end.
    let out = s(r"ValueError: '-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n'");
    assert!(!out.contains("MIIEvQ"), "{out}");
    let out = s("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk");
    assert_eq!(out, "-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]");
}

#[test]
fn private_key_across_lines() {
    let lines: Vec<String> = [
        "ValueError: bad key",
        "-----BEGIN EC PRIVATE KEY-----",
        "MHcCAQEEIBkg",
        "-----END EC PRIVATE KEY-----",
    ]
    .map(String::from)
    .to_vec();
    let out = sanitize_lines(&lines);
    assert_eq!(out.len(), 2);
    assert!(!out.join("\n").contains("MHcCAQEEIBkg"));
    assert!(sanitize_lines(&[]).is_empty());
}

#[test]
fn authorization_headers() {
    assert_eq!(
        s("Authorization: Bearer abc.def-123"),
        "Authorization: Bearer [REDACTED]"
    );
    assert_eq!(
        s(r#"{"authorization": "Basic dXNlcjpwYXNz"}"#),
        r#"{"authorization": "Basic [REDACTED]"}"#
    );
    assert_eq!(s("Authorization=s3cr3t"), "Authorization=[REDACTED]");
    assert_eq!(
        s("sent header Bearer eyABCDEFGH12345678"),
        "sent header Bearer [REDACTED]"
    );
    assert_eq!(s("using basic dXNlcjpwYXNz"), "using basic [REDACTED]");
    assert_eq!(s("Cookie: session=abc; id=42"), "Cookie: [REDACTED]");
}

#[test]
fn bearer_and_basic_in_prose_survive() {
    for text in [
        "the bearer of bad news",
        "Bearer authentication is configured",
        "basic functionality works",
        "Basic Auth enabled",
    ] {
        assert_eq!(s(text), text);
    }
}

#[test]
fn url_credentials() {
    assert_eq!(
        s("connect postgres://admin:hunter2@db:5432/x failed"),
        "connect postgres://admin:[REDACTED]@db:5432/x failed"
    );
    assert_eq!(
        s("redis://:p4ss@cache:6379"),
        "redis://:[REDACTED]@cache:6379"
    );
    assert_eq!(s("https://example.com/a:b"), "https://example.com/a:b");
}

#[test]
fn token_formats() {
    let cases = [
        ("key AKIAIOSFODNN7EXAMPLE used", "key AKIA[REDACTED] used"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_[REDACTED]"),
        (
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "github_pat_[REDACTED]",
        ),
        ("sk-proj-abc123DEF456ghi789JKL0", "sk-[REDACTED]"),
        ("xoxb-123456789012-abcdefghij", "xoxb-[REDACTED]"),
        ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "hf_[REDACTED]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_-123 end",
            "jwt [REDACTED] end",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(s(input), want, "{input}");
    }
    assert_eq!(
        s("use sk-learn-compatible-estimators"),
        "use sk-learn-compatible-estimators"
    );
}

#[test]
fn key_value_forms() {
    let cases = [
        ("password=hunter2", "password=[REDACTED]"),
        ("db_password: hunter2 next", "db_password: [REDACTED] next"),
        ("passwd: x", "passwd: [REDACTED]"),
        ("secret=abc", "secret=[REDACTED]"),
        ("token=abcdef123456", "token=[REDACTED]"),
        ("API_KEY=abcdefgh1234", "API_KEY=[REDACTED]"),
        ("apikey: 'abcdefgh1234'", "apikey: '[REDACTED]'"),
        (
            r#"{"api_key": "abcdefgh1234", "n": 1}"#,
            r#"{"api_key": "[REDACTED]", "n": 1}"#,
        ),
        (
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key=[REDACTED]",
        ),
        (
            "{'access_token': 'abcd1234efgh'}",
            "{'access_token': '[REDACTED]'}",
        ),
        (
            "url?x=1&token=abcdefgh99&y=2",
            "url?x=1&token=[REDACTED]&y=2",
        ),
        (
            "run --password hunter2 --v",
            "run --password [REDACTED] --v",
        ),
        (
            "HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
            "HF_TOKEN=hf_[REDACTED]",
        ),
        (
            r#"body "{\"password\": \"pw\"}""#,
            r#"body "{\"password\": \"[REDACTED]\"}""#,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(s(input), want, "{input}");
    }
}

#[test]
fn ordinary_words_survive() {
    for text in [
        "tokenizer loaded",
        "tokenizer=bert-base-uncased",
        "max_tokens=512",
        "num_tokens: 12",
        "password field is empty",
        "token count 5",
        "pad_token=<pad> cls_token: [CLS]",
        "max_new_token=256",
        "author=someone",
        "PWD=/home/user",
        "password=null",
        "secret: ***",
    ] {
        assert_eq!(s(text), text);
    }
}

#[test]
fn debatable_prose_is_redacted() {
    // A password-like key followed by `: word` is taken as a value.
    assert_eq!(
        s("invalid password: too short"),
        "invalid password: [REDACTED] short"
    );
}

#[test]
fn idempotent() {
    for text in [
        "password=hunter2 Authorization: Bearer abc123456789abcdef",
        "postgres://u:p@h/db sk-abcdefghij0123456789xyz",
    ] {
        let once = s(text);
        assert_eq!(s(&once), once);
    }
}

/// One secret form: the text, the secret in it, and the text as it must come out.
type SecretForm = (&'static str, &'static str, &'static str);

const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// Secret forms, each with its secret and the output; every one must lose its secret.
const SECRET_FORMS: &[SecretForm] = &[
    // Keys ending in `_KEY`, as `NAME=value`, `NAME: value` and JSON.
    (
        "SECRET_KEY=django-insecure-8f7a6b5c4d3e",
        "django-insecure",
        "SECRET_KEY=[REDACTED]",
    ),
    (
        "JWT_SECRET_KEY: mysupersecretvalue",
        "mysupersecretvalue",
        "JWT_SECRET_KEY: [REDACTED]",
    ),
    (
        "ENCRYPTION_KEY=0123abcdEFGH4567ijkl",
        "0123abcdEFGH4567ijkl",
        "ENCRYPTION_KEY=[REDACTED]",
    ),
    (
        r#"{"SECRET_KEY": "hunter2hunter2", "DEBUG": false}"#,
        "hunter2hunter2",
        r#"{"SECRET_KEY": "[REDACTED]", "DEBUG": false}"#,
    ),
    (
        r#"{"encryptionKey": "c2VjcmV0LWtleS0xMjM0"}"#,
        "c2VjcmV0LWtleS0xMjM0",
        r#"{"encryptionKey": "[REDACTED]"}"#,
    ),
    (
        "ENCRYPTION_KEY: 'k3y-0f-th3-d4y'",
        "k3y-0f-th3-d4y",
        "ENCRYPTION_KEY: '[REDACTED]'",
    ),
    // pass, pwd, MYSQL_PWD, mysql -p.
    ("pass=hunter2", "hunter2", "pass=[REDACTED]"),
    ("db_pass: hunter2", "hunter2", "db_pass: [REDACTED]"),
    ("dbPass=hunter2", "hunter2", "dbPass=[REDACTED]"),
    ("pwd=hunter2", "hunter2", "pwd=[REDACTED]"),
    (
        "Server=db;Uid=sa;Pwd=Hunter2!;Database=x",
        "Hunter2!",
        "Server=db;Uid=sa;Pwd=[REDACTED];Database=x",
    ),
    (
        "MYSQL_PWD=hunter2 mysql -u root",
        "hunter2",
        "MYSQL_PWD=[REDACTED] mysql -u root",
    ),
    (
        "mysql -u root -phunter2 mydb",
        "hunter2",
        "mysql -u root -p[REDACTED] mydb",
    ),
    (
        "/usr/bin/mysqldump -h db -pS3cr3t! --all-databases",
        "S3cr3t!",
        "/usr/bin/mysqldump -h db -p[REDACTED] --all-databases",
    ),
    (
        "sshpass -p hunter2 ssh -p 2222 host",
        "hunter2",
        "sshpass -p [REDACTED] ssh -p 2222 host",
    ),
    (
        "redis-cli -h cache -a hunter2 ping",
        "hunter2",
        "redis-cli -h cache -a [REDACTED] ping",
    ),
    // Short token and auth values.
    ("token=abc123", "abc123", "token=[REDACTED]"),
    ("auth=x9y8z7", "x9y8z7", "auth=[REDACTED]"),
    (
        "GET /api?auth=qwerty&page=2",
        "qwerty",
        "GET /api?auth=[REDACTED]&page=2",
    ),
    (r#"{"token": "tk42"}"#, "tk42", r#"{"token": "[REDACTED]"}"#),
    ("X-Auth-Token: ab12cd", "ab12cd", "X-Auth-Token: [REDACTED]"),
    (
        "run --token abc123 -v",
        "abc123",
        "run --token [REDACTED] -v",
    ),
    // AWS secret access keys next to their key id.
    (
        "AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        AWS_SECRET,
        "AKIA[REDACTED] [REDACTED]",
    ),
    (
        "bob,AKIAIOSFODNN7EXAMPLE,wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        AWS_SECRET,
        "bob,AKIA[REDACTED],[REDACTED]",
    ),
    (
        "('AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY')",
        AWS_SECRET,
        "('AKIA[REDACTED]', '[REDACTED]')",
    ),
    (
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        AWS_SECRET,
        "aws_secret_access_key=[REDACTED]",
    ),
    (
        "key AKIAIOSFODNN7EXAMPLE used",
        AWS_ID,
        "key AKIA[REDACTED] used",
    ),
    // Azure.
    (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4Zm9v+/==;EndpointSuffix=core.windows.net",
        "Zm9vYmFyYmF6cXV4Zm9v",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=[REDACTED];EndpointSuffix=core.windows.net",
    ),
    (
        "https://acct.blob.core.windows.net/c/b?sv=2021-08-06&ss=b&sig=AbCdEf%2BgHiJkLmNoP%3D",
        "AbCdEf%2BgHiJkLmNoP",
        "https://acct.blob.core.windows.net/c/b?sv=2021-08-06&ss=b&sig=[REDACTED]",
    ),
    (
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=Zm9vYmFyYmF6=",
        "Zm9vYmFyYmF6",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=[REDACTED]",
    ),
    // Webhooks.
    (
        "POST https://hooks.slack.com/services/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 failed",
        "a1B2c3D4e5F6g7H8i9J0k1L2",
        "POST https://hooks.slack.com/services/[REDACTED] failed",
    ),
    (
        "https://discord.com/api/webhooks/123456789012345678/abcDEF_ghi-JKLmno0123",
        "abcDEF_ghi-JKLmno0123",
        "https://discord.com/api/webhooks/[REDACTED]",
    ),
    (
        "https://discordapp.com/api/webhooks/123456789012345678/Zyx987_wvu",
        "Zyx987_wvu",
        "https://discordapp.com/api/webhooks/[REDACTED]",
    ),
    // SendGrid, PyPI, Google OAuth.
    (
        "SG.abcdefghijklmnopqrstuv.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq",
        "abcdefghijklmnopqrstuv",
        "SG.[REDACTED]",
    ),
    (
        "twine upload -p pypi-AgEIcHlwaS5vcmcCJGFiY2RlZmdoLWlqa2wtbW5vcC1xcnN0",
        "AgEIcHlwaS5vcmc",
        "twine upload -p pypi-[REDACTED]",
    ),
    (
        "access ya29.a0AfH6SMBx1234567890abcdefghijklmnop expired",
        "a0AfH6SMBx",
        "access ya29.[REDACTED] expired",
    ),
    // URL passwords, with `@` and `/` in them.
    (
        "postgres://user:p@ss/word@host/db",
        "p@ss/word",
        "postgres://user:[REDACTED]@host/db",
    ),
    (
        "mongodb+srv://admin:pa/ss:w0rd@cluster0.example.net/db?retryWrites=true",
        "pa/ss:w0rd",
        "mongodb+srv://admin:[REDACTED]@cluster0.example.net/db?retryWrites=true",
    ),
    (
        "https://me@example.com:pw123@host/x",
        "pw123",
        "https://me@example.com:[REDACTED]@host/x",
    ),
    (
        "postgres://u:pw@h/db",
        ":pw@",
        "postgres://u:[REDACTED]@h/db",
    ),
    // Flags, and forms caught before.
    (
        "--api-key sk-live-4f9a8b7c6d5e4f3a2b1c",
        "4f9a8b7c6d5e4f3a2b1c",
        "--api-key sk-[REDACTED]",
    ),
    (
        "--api-key=abcd1234efgh",
        "abcd1234efgh",
        "--api-key=[REDACTED]",
    ),
    (
        "export DB_PASSWORD='s3cr3t!'",
        "s3cr3t!",
        "export DB_PASSWORD='[REDACTED]'",
    ),
    ("client_secret: abc", "abc", "client_secret: [REDACTED]"),
    (
        "GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "abcdefghijklmnopqrstuvwxyz0123456789",
        "GITHUB_TOKEN=ghp_[REDACTED]",
    ),
    (
        "Authorization: Bearer abc.def-123",
        "abc.def-123",
        "Authorization: Bearer [REDACTED]",
    ),
    (
        "stripe sk_live_abcdefghij0123456789",
        "abcdefghij0123456789",
        "stripe sk_live_[REDACTED]",
    ),
    (
        "glpat-abcdefghij0123456789xy",
        "abcdefghij0123456789xy",
        "glpat-[REDACTED]",
    ),
];

#[test]
fn secret_forms_lose_their_secret() {
    assert!(SECRET_FORMS.len() >= 40, "{} forms", SECRET_FORMS.len());
    for &(input, secret, want) in SECRET_FORMS {
        assert!(input.contains(secret), "the case holds its secret: {input}");
        let out = s(input);
        assert!(!out.contains(secret), "{secret} survived in {out}");
        assert_eq!(out, want, "{input}");
        assert_eq!(s(&out), out, "sanitizing again changes {out}");
    }
}

/// Text that looks like a secret and is none: each must come out unchanged.
const LOOK_ALIKES: &[&str] = &[
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "md5 d41d8cd98f00b204e9800998ecf8427e",
    "checksum=d41d8cd98f00b204e9800998ecf8427e",
    "request 123e4567-e89b-12d3-a456-426614174000 done",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    "commit 5fdaffa3c8e1b2d4f6a7b8c9d0e1f2a3b4c5d6e7 (HEAD -> main)",
    "HEAD is now at a2a6305 Calibration cache key",
    "num_workers=4 batch_size=32 lr=0.001",
    "--max-tokens 512 --temperature 0.7",
    "--max-new-token 256",
    "/home/user/models/checkpoint-1000/pytorch_model.bin",
    "torch 2.3.1+cu121 numpy==1.26.4",
    "python -m http.server -p 8080",
    "ssh -p 2222 user@host",
    "docker run -p 5432:5432 postgres:16",
    "monkey=banana bypass=1 keyboard=us",
    "primary_key=id sort_key=name",
    "public_key=ssh-ed25519AAAAC3NzaC1lZDI1NTE5AAAAI",
    "SyntaxError: Unexpected token '<' in JSON at position 0",
    "unexpected token: EOF",
    "PASS: test_login (0.01s)",
    "auth=basic token=none",
    "https://registry.npmjs.org:443/@babel/core",
    "https://example.com/path?email=a@b.com",
    "git@github.com:org/repo.git",
    "mysql-server 8.0 installed",
    "Can't connect to MySQL server on 'db' (111)",
    "PWD=/home/user OLDPWD=/tmp",
    "eos_token=</s> pad_token=<pad>",
    "signal SIGTERM received, key not found: 'model.layers.0'",
];

#[test]
fn look_alikes_survive() {
    assert!(LOOK_ALIKES.len() >= 20, "{} look-alikes", LOOK_ALIKES.len());
    for &text in LOOK_ALIKES {
        assert_eq!(s(text), text);
    }
}

fn argv(args: &[&str]) -> Vec<String> {
    sanitize_argv(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
}

#[test]
fn command_lines() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "python3",
                "serve.py",
                "--api-key",
                "sk-live-4f9a8b7c6d5e4f3a2b1c",
                "--port",
                "8080",
            ],
            &[
                "python3",
                "serve.py",
                "--api-key",
                "[REDACTED]",
                "--port",
                "8080",
            ],
        ),
        (
            &[
                "app",
                "--password",
                "hunter2",
                "--token",
                "abc123",
                "--auth",
                "basic",
            ],
            &[
                "app",
                "--password",
                "[REDACTED]",
                "--token",
                "[REDACTED]",
                "--auth",
                "basic",
            ],
        ),
        (
            &[
                "app",
                "--api-key=abcd1234efgh",
                "--db",
                "postgres://u:pw@h/db",
            ],
            &[
                "app",
                "--api-key=[REDACTED]",
                "--db",
                "postgres://u:[REDACTED]@h/db",
            ],
        ),
        (
            &["mysql", "-u", "root", "-phunter2", "mydb"],
            &["mysql", "-u", "root", "-p[REDACTED]", "mydb"],
        ),
        (
            &["sudo", "/usr/bin/mysql", "-h", "db", "-p", "hunter2"],
            &["sudo", "/usr/bin/mysql", "-h", "db", "-p", "[REDACTED]"],
        ),
        (
            &["sshpass", "-p", "hunter2", "ssh", "-p", "2222", "host"],
            &["sshpass", "-p", "[REDACTED]", "ssh", "-p", "2222", "host"],
        ),
        (
            &["redis-cli", "-a", "hunter2", "ping"],
            &["redis-cli", "-a", "[REDACTED]", "ping"],
        ),
        (
            &["env", "MYSQL_PWD=hunter2", "mysql", "-p", "-u", "root"],
            &["env", "MYSQL_PWD=[REDACTED]", "mysql", "-p", "-u", "root"],
        ),
        (
            &["sh", "-c", "mysql -phunter2 db && echo ok"],
            &["sh", "-c", "mysql -p[REDACTED] db && echo ok"],
        ),
    ];
    for &(input, want) in cases {
        assert_eq!(argv(input), want, "{input:?}");
    }
    // Look-alikes stay as they are.
    for input in [
        &["python", "-m", "http.server", "-p", "8080"][..],
        &[
            "llm",
            "--max-tokens",
            "512",
            "--num_workers=4",
            "--model",
            "/models/a.bin",
        ],
        &["app", "--password", "-", "--token"],
        &[
            "git",
            "checkout",
            "5fdaffa3c8e1b2d4f6a7b8c9d0e1f2a3b4c5d6e7",
        ],
    ] {
        assert_eq!(argv(input), input, "{input:?}");
    }
    assert!(argv(&[]).is_empty());
}
