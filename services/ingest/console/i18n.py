"""The console's words in English and Japanese.

Templates and pages say ``t("Messages")``: the English text is the key, and ``JA`` gives the
Japanese. The language is the ``hato_lang`` cookie (the switch in the header), else the
browser's ``Accept-Language``, else English.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("en", "ja")
LANG_COOKIE = "hato_lang"

JA: dict[str, str] = {
    "Hato console": "Hato コンソール",
    "Overview": "概要",
    "Messages": "メッセージ",
    "Suppressions": "配信停止リスト",
    "Domains": "ドメイン",
    "Webhooks": "Webhook",
    "Keys": "キー",
    "Sign in": "サインイン",
    "Sign out": "サインアウト",
    "Email": "メールアドレス",
    "Password": "パスワード",
    "Wrong email or password.": "メールアドレスまたはパスワードが違います。",
    "Too many failed sign-ins: try again later.": (
        "サインインの失敗が多すぎます。しばらくしてから再度お試しください。"
    ),
    "The form expired: please try again.": (
        "フォームの有効期限が切れました。もう一度お試しください。"
    ),
    "Tenant": "テナント",
    "Operator": "オペレーター",
    "Show": "表示",
    "Search": "検索",
    "Recipient": "宛先",
    "Recipients": "宛先",
    "Sender": "差出人",
    "envelope": "エンベロープ",
    "Subject": "件名",
    "Message-ID": "Message-ID",
    "Tag": "タグ",
    "Status": "状態",
    "From": "開始",
    "Until": "終了",
    "any": "すべて",
    "Created": "作成日時",
    "Next page": "次のページ",
    "No messages found.": "メッセージは見つかりませんでした。",
    "Message": "メッセージ",
    "Trace id": "トレース ID",
    "Signed with": "署名",
    "not signed": "署名なし",
    "Timeline": "タイムライン",
    "Time": "日時",
    "Event": "イベント",
    "Detail": "詳細",
    "Remote reply": "相手サーバーの応答",
    "MX": "MX",
    "Source IP": "送信元 IP",
    "Reason": "理由",
    "Next attempt": "次回の再送",
    "Webhook deliveries": "Webhook 送信",
    "Attempts": "試行回数",
    "Raw detail": "詳細(原文)",
    "Waiting": "待機中",
    "Not found": "見つかりません",
    "There is no such page or message.": "そのページまたはメッセージはありません。",
    "Address": "アドレス",
    "Source": "登録元",
    "Applies to": "対象",
    "all mail": "すべてのメール",
    "Expires": "有効期限",
    "never": "なし",
    "Add": "追加",
    "Remove": "削除",
    "Export CSV": "CSV 出力",
    "Remove the suppression of %s?": "%s の配信停止を解除しますか?",
    "Yes, remove": "はい、解除します",
    "Cancel": "キャンセル",
    "Added %s to the suppression list.": "%s を配信停止リストに追加しました。",
    "Removed %s from the suppression list.": "%s を配信停止リストから削除しました。",
    "No suppressed addresses.": "配信停止中のアドレスはありません。",
    "API keys": "API キー",
    "SMTP credentials": "SMTP 認証情報",
    "Name": "名前",
    "Prefix": "プレフィックス",
    "Allowed From": "許可する From",
    "any From of the tenant": "テナントのすべての From",
    "Create": "作成",
    "Revoke": "失効",
    "User name": "ユーザー名",
    "Addresses or domains, comma-separated (optional)": (
        "アドレスまたはドメイン(カンマ区切り、任意)"
    ),
    "Copy it now: it is shown only once.": "今すぐコピーしてください。一度しか表示されません。",
    "New API key": "新しい API キー",
    "New SMTP password for %s": "%s の新しい SMTP パスワード",
    "Revoked API key %s.": "API キー %s を失効させました。",
    "Removed SMTP user %s.": "SMTP ユーザー %s を削除しました。",
    "Domain": "ドメイン",
    "Verified": "確認済み",
    "not verified": "未確認",
    "DNS records to publish": "公開する DNS レコード",
    "Type": "種類",
    "Value": "値",
    "Health": "健全性",
    "Last checked": "最終確認",
    "not checked yet": "未確認",
    "Check now": "今すぐ確認",
    "Check": "項目",
    "Verdict": "判定",
    "DKIM keys": "DKIM 鍵",
    "Selector": "セレクター",
    "Algorithm": "アルゴリズム",
    "State": "状態",
    "Rotate": "ローテーション",
    "A new key is pending: publish its record, then it takes over.": (
        "新しい鍵が保留中です。レコードを公開すると切り替わります。"
    ),
    "No domains.": "ドメインはありません。",
    "Endpoint": "エンドポイント",
    "Events": "イベント",
    "all": "すべて",
    "Recent deliveries": "最近の送信",
    "Last answer": "最後の応答",
    "Replay": "再送",
    "Queued %s events again.": "%s 件のイベントを再送キューに入れました。",
    "No webhooks.": "Webhook はありません。",
    "Today (UTC)": "本日 (UTC)",
    "accepted": "受付",
    "delivered": "配信済み",
    "deferred": "遅延",
    "bounced": "バウンス",
    "complained": "苦情",
    "suppressed": "配信停止",
    "queued": "待機中",
    "signed": "署名済み",
    "expired": "期限切れ",
    "failed": "失敗",
    "partially_delivered": "一部配信",
    "undelivered": "未配信",
    "unsigned": "署名なし",
    "dead_lettered": "処理不能",
    "dkim_key_pending": "DKIM 鍵 保留",
    "dkim_key_activated": "DKIM 鍵 有効化",
    "dkim_key_retired": "DKIM 鍵 退役",
    "domain_check_failed": "ドメイン確認 失敗",
    "Top deferral and bounce reasons by provider": "プロバイダー別の遅延・バウンス理由 (上位)",
    "Provider": "プロバイダー",
    "Count": "件数",
    "Nothing deferred or bounced today.": "本日の遅延・バウンスはありません。",
    "Grafana dashboards": "Grafana ダッシュボード",
    "Language": "言語",
    "Pick a tenant": "テナントを選択",
    "No tenant yet.": "テナントがまだありません。",
    "counted up to %s events": "%s 件まで集計",
}

CATALOGUES = {"ja": JA}


def language(cookie: str | None, accept: str | None) -> str:
    """The cookie's language when it is one we have, else the first of Accept-Language's
    (by q-value) we have, else English."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower().split("-")[0]))
    for _, _, tag in sorted(ranked):
        if tag in LANGUAGES:
            return tag
    return "en"


def translator(lang: str) -> Callable[..., str]:
    """``t(text, *args)``: ``text`` in ``lang``, with ``%s`` filled by ``args``."""
    catalogue = CATALOGUES.get(lang, {})

    def t(text: str, *args: object) -> str:
        said = catalogue.get(text, text)
        return said % args if args else said

    return t
