"""The strings of the page actions that match the API's: signing several forms at once,
moving a subject's schedule and file items, in English and Simplified Chinese (merged into
:data:`consortia.web.i18n.CATALOGUES`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["EN", "ZH"]

EN: Final[Mapping[str, str]] = {
    "nav.sign": "Signatures",
    "sign.title": "Forms to sign",
    "sign.caption": "Complete or verified forms at your sites, not yet signed",
    "sign.tick": "Sign",
    "sign.tick_form": "Sign {form} of {subject} at {event}",
    "sign.more": "More forms await a signature: sign these, and the next ones appear.",
    "sign.choose_meaning": "Choose a meaning",
    "sign.meaning_authorship": "Authorship: I am the author of the data in these forms",
    "sign.meaning_review": "Review: I have reviewed the data in these forms",
    "sign.meaning_approval": "Approval: I approve the data in these forms as accurate and complete",
    "sign.meaning_responsibility": "Responsibility: I take responsibility for the data in "
    "these forms",
    "sign.submit": "Sign the ticked forms",
    "sign.signed": "Signed {count} form(s); each signature is in the audit trail.",
    "sign.none": "No form awaits your signature.",
    "sign.none_ticked": "Tick at least one form to sign; nothing was signed.",
    "sign.bad_meaning": "Choose what your signature means; nothing was signed.",
    "sign.password_refused": "The password was not accepted; no form was signed.",
    "sign.conflict": "A ticked form changed meanwhile or can no longer be signed; no form "
    "was signed. Reload the list and sign again.",
    "sign.refused": "Nothing was signed:",
}

ZH: Final[Mapping[str, str]] = {
    "nav.sign": "签名",
    "sign.title": "待签署表单",
    "sign.caption": "您所在中心已完成或已核查、尚未签署的表单",
    "sign.tick": "签署",
    "sign.tick_form": "签署 {subject} 在 {event} 的 {form}",
    "sign.more": "还有更多表单待签署：签署这些后，下一批将显示。",
    "sign.choose_meaning": "请选择签名含义",
    "sign.meaning_authorship": "作者：我是这些表单中数据的作者",
    "sign.meaning_review": "审阅：我已审阅这些表单中的数据",
    "sign.meaning_approval": "批准：我批准这些表单中的数据准确且完整",
    "sign.meaning_responsibility": "负责：我对这些表单中的数据负责",
    "sign.submit": "签署所选表单",
    "sign.signed": "已签署 {count} 份表单；每个签名均已记入审计追踪。",
    "sign.none": "没有等待您签署的表单。",
    "sign.none_ticked": "请至少选择一份要签署的表单；未签署任何表单。",
    "sign.bad_meaning": "请选择签名含义；未签署任何表单。",
    "sign.password_refused": "密码未被接受；未签署任何表单。",
    "sign.conflict": "所选表单中有表单已被修改或已无法签署；未签署任何表单。请刷新列表后重新签署。",
    "sign.refused": "未签署任何表单：",
}
