"""The strings of the page actions that match the API's: signing several forms at once and
moving a subject's schedule, in English and Simplified Chinese (merged into
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
    "schedule.move": "Move the schedule",
    "schedule.explain": "Day 0 of the protocol (e.g. the infusion date): every scheduled "
    "event's target date and window follow it. The move is audited with its reason.",
    "schedule.anchor": "New day 0",
    "schedule.reason": "Reason for the move",
    "schedule.submit": "Move the schedule",
    "schedule.moved": "The schedule moved; the target dates and windows below follow the new "
    "day 0.",
    "schedule.bad_date": "Give the new day 0 as YYYY-MM-DD; the schedule did not move.",
    "schedule.reason_needed": "Moving a schedule needs a reason; the schedule did not move.",
    "schedule.reason_too_long": "The reason is over 2,000 characters; the schedule did not move.",
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
    "schedule.move": "调整访视排程",
    "schedule.explain": "方案第 0 天（如回输日期）：每个计划访视的目标日期和窗口期随之调整。"
    "此次调整连同原因记入审计追踪。",
    "schedule.anchor": "新的第 0 天",
    "schedule.reason": "调整原因",
    "schedule.submit": "调整访视排程",
    "schedule.moved": "排程已调整；下方的目标日期和窗口期已按新的第 0 天更新。",
    "schedule.bad_date": "请按 YYYY-MM-DD 格式填写新的第 0 天；排程未调整。",
    "schedule.reason_needed": "调整排程需要填写原因；排程未调整。",
    "schedule.reason_too_long": "原因超过 2,000 个字符；排程未调整。",
}
