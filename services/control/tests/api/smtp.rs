//! `SmtpMailer` (lettre) speaking SMTP to a listener on a free port that answers as a mail
//! server does and records what it receives.

use control::mail::{MailLinks, Mailer, SmtpMailer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the server was told: the envelope commands and the message.
struct Received {
    commands: Vec<String>,
    message: String,
}

/// Accepts one SMTP session and answers every command with success, up to the end of DATA.
async fn receive_one(listener: TcpListener) -> Received {
    let (socket, _) = listener.accept().await.unwrap();
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 test.local ESMTP\r\n").await.unwrap();
    let mut commands = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
        commands.push(line.clone());
        match verb.as_str() {
            "EHLO" | "HELO" => write.write_all(b"250 test.local\r\n").await.unwrap(),
            "DATA" => {
                write.write_all(b"354 end with a dot\r\n").await.unwrap();
                let mut message = String::new();
                while let Some(line) = lines.next_line().await.unwrap() {
                    if line == "." {
                        break;
                    }
                    message.push_str(&line);
                    message.push('\n');
                }
                write.write_all(b"250 queued\r\n").await.unwrap();
                return Received { commands, message };
            }
            _ => write.write_all(b"250 ok\r\n").await.unwrap(),
        }
    }
    panic!("the client left before DATA: {commands:?}");
}

#[tokio::test]
async fn the_smtp_mailer_delivers_the_mail_with_its_link() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(receive_one(listener));
    let mailer = SmtpMailer::new(
        &format!("smtp://127.0.0.1:{port}"),
        "Switchboard <no-reply@example.com>",
    )
    .unwrap();
    let mail = MailLinks::new("https://rt.example.com").password_reset("ann@example.com", "f00d");
    let link = mail.link.clone();
    mailer.send(mail).await.unwrap();

    let received = tokio::time::timeout(std::time::Duration::from_secs(20), server)
        .await
        .expect("the server got the mail")
        .unwrap();
    let commands = received.commands.join("\n");
    assert!(
        commands.contains("MAIL FROM:<no-reply@example.com>"),
        "{commands}"
    );
    assert!(commands.contains("RCPT TO:<ann@example.com>"), "{commands}");
    assert!(
        received
            .message
            .contains("Subject: Reset your Switchboard password"),
        "{}",
        received.message
    );
    // Long lines go quoted-printable, as lettre picks; a mail reader decodes them.
    let (_, body) = received
        .message
        .split_once("\n\n")
        .expect("headers, then the body");
    let decoded = quoted_printable::decode(body, quoted_printable::ParseMode::Robust).unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    assert!(decoded.contains(&link), "{decoded}");
    assert_eq!(link, "https://rt.example.com/reset-password?token=f00d");
}

#[tokio::test]
async fn bad_smtp_settings_are_refused_without_echoing_the_password() {
    let bad_url = SmtpMailer::new("mailto://user:hunter22@host", "a@example.com");
    let message = bad_url.err().expect("refused").to_string();
    assert!(!message.contains("hunter22"), "{message}");
    assert!(SmtpMailer::new("smtp://127.0.0.1:25", "not an address").is_err());
}
