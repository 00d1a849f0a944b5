"""The web pages' strings in English and Simplified Chinese, and how a language is chosen.

Every key exists in every language (a test checks). The language of a request is, first
match wins: ``?lang=``, the ``lang`` cookie, ``Accept-Language``, else English.

>>> pick_language(query="zh", cookie=None, accept_language=None)
'zh'
>>> pick_language(query=None, cookie=None, accept_language="fr;q=1, zh-CN;q=0.8, en;q=0.5")
'zh'
>>> translate("zh", "login.submit")
'登录'
"""

from __future__ import annotations

from collections.abc import Mapping

from consortia.services.authentication import LOGIN_REFUSED

__all__ = [
    "CATALOGUES",
    "DEFAULT_LANGUAGE",
    "HTML_LANG",
    "LANGUAGES",
    "normalise_language",
    "pick_language",
    "translate",
]

DEFAULT_LANGUAGE = "en"

CATALOGUES: Mapping[str, Mapping[str, str]] = {
    "en": {
        "app.name": "Consortia",
        "lang.switch": "中文",
        "lang.switch_to": "zh",
        "login.title": "Sign in",
        "login.email": "Email",
        "login.password": "Password",
        "login.submit": "Sign in",
        "login.required": "Required.",
        # the API's own words, so the page and the API refuse alike
        "login.refused": LOGIN_REFUSED,
        "login.throttled": "Too many failed sign-ins from this address or for this account. "
        "Wait a few minutes, then try again.",
        "home.title": "Home",
        "home.signed_in_as": "Signed in as",
        "home.grants": "Your roles",
        "home.no_grants": "You hold no roles yet; ask a study administrator.",
        "home.study": "Study",
        "home.site": "Site",
        "home.role": "Role",
        "home.everywhere": "all",
        "logout.submit": "Sign out",
        "home.approvals_link": "Analysis requests waiting for your approval",
        "home.studies": "Data entry",
        "nav.home": "Home",
        "subjects.title": "Subjects",
        "subjects.subject": "Subject",
        "subjects.status": "Status",
        "subjects.none": "No subjects you may see in this study yet.",
        "subjects.more": "More subjects",
        "subjects.enrol": "Enrol a subject",
        "subjects.initials": "Initials (optional)",
        "subjects.screening_date": "Screening date",
        "subjects.enrol_submit": "Enrol in screening",
        "subjects.bad_date": "Give the date as YYYY-MM-DD.",
        "subjects.bad_start": "start: {start} is out of range; use a number from 0 to {last}.",
        "subject.new_status": "New status",
        "subject.status_date": "On",
        "subject.status_reason": "Reason (needed for screen failed and withdrawn)",
        "subject.change_status": "Change the status",
        "subject.back": "All subjects",
        "subject.event": "Event",
        "subject.target": "Target date",
        "subject.window": "Window",
        "subject.visit": "Visit date",
        "subject.forms": "Forms",
        "subject.no_events": "No events yet: the schedule starts when the subject is enrolled.",
        "subject.add_event": "Record an event",
        "form.back": "Back to the subject",
        "form.state": "State",
        "form.version": "version",
        "form.open_queries": "Open queries on this form",
        "form.saved": "Saved: version",
        "form.refused": "Nothing was saved. Correct the values marked below and save again.",
        "form.conflict": "Nothing was saved: the form changed since you opened it. It is "
        "shown below as it is now; enter your changes again.",
        "form.masked": "This form holds identifiers you may not see, so it cannot be edited here.",
        "form.read_only": "You may read this form but not change it.",
        "form.complete": "The form is complete",
        "form.visit_date": "Visit date (of the event; sets whether it was in its window)",
        "form.reason": "Reason for change (needed when a saved value changes)",
        "form.reason_too_long": "The reason may be at most 2,000 characters.",
        "form.save": "Save",
        "form.yes": "Yes",
        "form.no": "No",
        "form.steps": "Review",
        "form.step_verify": "Mark source data verified",
        "form.step_sign": "Sign the form",
        "form.step_lock": "Lock the form",
        "form.step_unlock": "Unlock the form",
        "form.done_verify": "Source data verification recorded.",
        "form.done_sign": "The form is signed.",
        "form.done_lock": "The form is locked.",
        "form.done_unlock": "The form is unlocked.",
        "form.meaning": "Meaning of your signature",
        "form.password": "Your password, to sign (21 CFR Part 11 §11.200)",
        "form.password_refused": "The password was not accepted; the form is not signed.",
        "form.unlock_reason": "Reason for unlocking",
        "form.verified_by": "Source data verified by",
        "form.signed_by": "Signed by",
        "form.done_answer": "Your answer is recorded.",
        "form.done_close": "The query is closed.",
        "form.done_reopen": "The query is open again.",
        "queries.title": "Queries",
        "queries.whole_form": "The whole form",
        "queries.age": "days open:",
        "queries.status_open": "open",
        "queries.status_answered": "answered",
        "queries.status_closed": "closed",
        "queries.origin_auto": "opened on saving",
        "queries.origin_manual": "opened by a reviewer",
        "queries.action_open": "opened",
        "queries.action_answer": "answered",
        "queries.action_close": "closed",
        "queries.action_reopen": "re-opened",
        "queries.message": "Your message",
        "queries.step_answer": "Answer",
        "queries.step_close": "Close",
        "queries.step_reopen": "Re-open",
        "queries.step_open": "Open the query",
        "queries.open_title": "Open a query",
        "queries.on_item": "On",
        "queries.text": "What needs clarifying",
        "form.done_open": "The query is open.",
        "state.not_started": "not started",
        "state.in_progress": "in progress",
        "state.complete": "complete",
        "state.verified": "verified",
        "state.signed": "signed",
        "state.locked": "locked",
        "state.screening": "screening",
        "state.eligible": "eligible",
        "state.screen_failed": "screen failed",
        "state.enrolled": "enrolled",
        "state.on_study": "on study",
        "state.completed": "completed",
        "state.withdrawn": "withdrawn",
        "state.in_window": "in window",
        "state.early": "early",
        "state.late": "late",
        "approvals.title": "Analysis requests",
        "approvals.intro": "Requests from other nodes queued for manual approval. "
        "An approval covers this exact request from this requester, every round of it.",
        "approvals.pending": "Waiting for a decision",
        "approvals.none_pending": "No requests are waiting.",
        "approvals.decided": "Decided",
        "approvals.none_decided": "No requests have been decided yet.",
        "approvals.id": "Request",
        "approvals.requester": "Requester",
        "approvals.kind": "Analysis",
        "approvals.table": "Table",
        "approvals.fields": "Variables and options",
        "approvals.submitted": "Submitted",
        "approvals.status": "Decision",
        "approvals.decided_by": "Decided by",
        "approvals.decided_at": "Decided at",
        "approvals.reason": "Reason",
        "approvals.reason_optional": "Reason (optional)",
        "approvals.deny_reason": "Reason for denying (the requester is told)",
        "approvals.reason_required": "A denial needs a reason.",
        "approvals.approve": "Approve",
        "approvals.deny": "Deny",
        "approvals.back": "Back to the home page",
        "approval_status.pending": "Pending",
        "approval_status.approved": "Approved",
        "approval_status.denied": "Denied",
        "error.title": "Something went wrong",
        "error.back": "Back to the home page",
        "error.400": "The request could not be understood.",
        "error.401": "Please sign in again.",
        "error.403": "You are not allowed to do this.",
        "error.403_csrf": "This form has expired or did not come from this site. "
        "Go back, reload the page and try again.",
        "error.404": "Not found.",
        "error.409": "This conflicts with the current state; reload and try again.",
        "error.413": "The request is too large.",
        "error.415": "This form was sent in a format the node does not accept.",
        "error.422": "Some of what was sent is not valid.",
        "error.500": "An internal error occurred; the node's log has the details.",
        "role.node_admin": "Node administrator",
        "role.study_admin": "Study administrator",
        "role.investigator": "Investigator",
        "role.coordinator": "Coordinator",
        "role.monitor": "Monitor",
        "role.data_manager": "Data manager",
        "role.statistician": "Statistician",
        "role.sponsor_viewer": "Sponsor viewer",
        "role.auditor": "Auditor",
    },
    "zh": {
        "app.name": "Consortia",
        "lang.switch": "English",
        "lang.switch_to": "en",
        "login.title": "登录",
        "login.email": "电子邮箱",
        "login.password": "密码",
        "login.submit": "登录",
        "login.required": "必填。",
        "login.refused": "电子邮箱或密码错误，或账户因多次失败已被锁定；请稍后再试",
        "login.throttled": "来自此地址或针对此账户的失败登录次数过多。请等待几分钟后再试。",
        "home.title": "首页",
        "home.signed_in_as": "当前用户",
        "home.grants": "您的角色",
        "home.no_grants": "您尚无任何角色；请联系研究管理员。",
        "home.study": "研究",
        "home.site": "中心",
        "home.role": "角色",
        "home.everywhere": "全部",
        "logout.submit": "退出登录",
        "home.approvals_link": "等待您审批的分析请求",
        "home.studies": "数据录入",
        "nav.home": "首页",
        "subjects.title": "受试者",
        "subjects.subject": "受试者编号",
        "subjects.status": "状态",
        "subjects.none": "本研究中尚无您可查看的受试者。",
        "subjects.more": "更多受试者",
        "subjects.enrol": "登记受试者",
        "subjects.initials": "姓名缩写（可选）",
        "subjects.screening_date": "筛选日期",
        "subjects.enrol_submit": "登记进入筛选",
        "subjects.bad_date": "请按 YYYY-MM-DD 格式填写日期。",
        "subjects.bad_start": "start：{start} 超出范围；请使用 0 到 {last} 之间的整数。",
        "subject.new_status": "新状态",
        "subject.status_date": "日期",
        "subject.status_reason": "原因（筛选失败和退出时必填）",
        "subject.change_status": "更改状态",
        "subject.back": "全部受试者",
        "subject.event": "访视",
        "subject.target": "目标日期",
        "subject.window": "窗口期",
        "subject.visit": "访视日期",
        "subject.forms": "表单",
        "subject.no_events": "尚无访视：受试者入组后开始排程。",
        "subject.add_event": "记录访视或事件",
        "form.back": "返回受试者",
        "form.state": "状态",
        "form.version": "版本",
        "form.open_queries": "本表单未关闭的质疑",
        "form.saved": "已保存：版本",
        "form.refused": "未保存。请更正下方标出的值后再保存。",
        "form.conflict": "未保存：您打开此表单后它已被修改。"
        "下方显示其当前内容；请重新输入您的修改。",
        "form.masked": "此表单含有您无权查看的身份信息，因此不能在此编辑。",
        "form.read_only": "您可以查看此表单，但不能修改。",
        "form.complete": "表单已填写完成",
        "form.visit_date": "访视日期（本次访视；据此判断是否在窗口期内）",
        "form.reason": "修改原因（更改已保存的值时必填）",
        "form.reason_too_long": "修改原因最多 2000 个字符。",
        "form.save": "保存",
        "form.yes": "是",
        "form.no": "否",
        "form.steps": "审核",
        "form.step_verify": "标记源数据已核查",
        "form.step_sign": "签署表单",
        "form.step_lock": "锁定表单",
        "form.step_unlock": "解锁表单",
        "form.done_verify": "已记录源数据核查。",
        "form.done_sign": "表单已签署。",
        "form.done_lock": "表单已锁定。",
        "form.done_unlock": "表单已解锁。",
        "form.meaning": "签名含义",
        "form.password": "您的密码，用于签名（21 CFR Part 11 §11.200）",
        "form.password_refused": "密码未被接受；表单未签署。",
        "form.unlock_reason": "解锁原因",
        "form.verified_by": "源数据核查人",
        "form.signed_by": "签署人",
        "form.done_answer": "您的回复已记录。",
        "form.done_close": "质疑已关闭。",
        "form.done_reopen": "质疑已重新打开。",
        "queries.title": "质疑",
        "queries.whole_form": "整张表单",
        "queries.age": "已开放天数：",
        "queries.status_open": "未回复",
        "queries.status_answered": "已回复",
        "queries.status_closed": "已关闭",
        "queries.origin_auto": "保存时自动生成",
        "queries.origin_manual": "审核人提出",
        "queries.action_open": "提出",
        "queries.action_answer": "回复",
        "queries.action_close": "关闭",
        "queries.action_reopen": "重新打开",
        "queries.message": "您的留言",
        "queries.step_answer": "回复",
        "queries.step_close": "关闭",
        "queries.step_reopen": "重新打开",
        "queries.step_open": "提出质疑",
        "queries.open_title": "提出质疑",
        "queries.on_item": "针对",
        "queries.text": "需要澄清的内容",
        "form.done_open": "质疑已提出。",
        "state.not_started": "未开始",
        "state.in_progress": "填写中",
        "state.complete": "已完成",
        "state.verified": "已核查",
        "state.signed": "已签名",
        "state.locked": "已锁定",
        "state.screening": "筛选中",
        "state.eligible": "符合入选",
        "state.screen_failed": "筛选失败",
        "state.enrolled": "已入组",
        "state.on_study": "研究中",
        "state.completed": "已完成研究",
        "state.withdrawn": "已退出",
        "state.in_window": "窗口期内",
        "state.early": "提前",
        "state.late": "延迟",
        "approvals.title": "分析请求",
        "approvals.intro": "来自其他节点、等待人工审批的请求。"
        "批准仅适用于该请求方的这一请求（含其每一轮）。",
        "approvals.pending": "等待决定",
        "approvals.none_pending": "没有等待中的请求。",
        "approvals.decided": "已决定",
        "approvals.none_decided": "尚无已决定的请求。",
        "approvals.id": "请求",
        "approvals.requester": "请求方",
        "approvals.kind": "分析",
        "approvals.table": "数据表",
        "approvals.fields": "变量与选项",
        "approvals.submitted": "提交时间",
        "approvals.status": "决定",
        "approvals.decided_by": "决定人",
        "approvals.decided_at": "决定时间",
        "approvals.reason": "理由",
        "approvals.reason_optional": "理由（可选）",
        "approvals.deny_reason": "拒绝理由（将告知请求方）",
        "approvals.reason_required": "拒绝时必须填写理由。",
        "approvals.approve": "批准",
        "approvals.deny": "拒绝",
        "approvals.back": "返回首页",
        "approval_status.pending": "待定",
        "approval_status.approved": "已批准",
        "approval_status.denied": "已拒绝",
        "error.title": "出错了",
        "error.back": "返回首页",
        "error.400": "无法理解该请求。",
        "error.401": "请重新登录。",
        "error.403": "您无权执行此操作。",
        "error.403_csrf": "此表单已过期或并非来自本站。请返回、刷新页面后重试。",
        "error.404": "未找到。",
        "error.409": "与当前状态冲突；请刷新后重试。",
        "error.413": "请求过大。",
        "error.415": "表单格式不被本节点接受。",
        "error.422": "提交的部分内容无效。",
        "error.500": "发生内部错误；详情见本节点日志。",
        "role.node_admin": "节点管理员",
        "role.study_admin": "研究管理员",
        "role.investigator": "研究者",
        "role.coordinator": "研究协调员",
        "role.monitor": "监查员",
        "role.data_manager": "数据管理员",
        "role.statistician": "统计师",
        "role.sponsor_viewer": "申办方查看者",
        "role.auditor": "稽查员",
    },
}

LANGUAGES = frozenset(CATALOGUES)
# the value of <html lang="...">
HTML_LANG: Mapping[str, str] = {"en": "en", "zh": "zh-Hans"}


def normalise_language(tag: str | None) -> str | None:
    """The supported language a tag such as ``zh-CN`` or ``en_GB`` means, else ``None``.

    Traditional Chinese (``zh-Hant``, ``zh-TW``, ``zh-HK``) is not offered as ``zh``.
    """
    if not tag:
        return None
    parts = tag.strip().lower().replace("_", "-").split("-")
    primary = parts[0]
    if primary == "zh":
        traditional = {"hant", "tw", "hk", "mo"}
        return None if traditional & set(parts[1:]) else "zh"
    return primary if primary in LANGUAGES else None


def _accepted(header: str) -> list[str]:
    """The language tags of an ``Accept-Language`` header, most preferred first."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def pick_language(*, query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The language of a request (see the module docstring)."""
    for candidate in (query, cookie):
        chosen = normalise_language(candidate)
        if chosen is not None:
            return chosen
    for tag in _accepted(accept_language or ""):
        chosen = normalise_language(tag)
        if chosen is not None:
            return chosen
    return DEFAULT_LANGUAGE


def translate(language: str, key: str) -> str:
    """The string ``key`` in ``language`` (English if the language is unknown)."""
    catalogue = CATALOGUES.get(language, CATALOGUES[DEFAULT_LANGUAGE])
    return catalogue[key]
