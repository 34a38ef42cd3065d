"""Lessons tab: a gallery of ready-made experiments (playground/lessons.py), each a card with what to look
for, the button to press and a link that opens its tab with its settings (a share link: the page reloads
and app.py selects the tab, its controls take the link's settings)."""

from __future__ import annotations

import html
import importlib

import gradio as gr

from ..lessons import LESSONS, Lesson, check, link
from ..tabkit import markdown

TITLE = "Lessons"

INTRO = """<p class='lessons-intro'>
<b>Lessons: an experiment one click away.</b> Each card is a ready-made run: its link opens the tab with the
model, the data and the settings in place, and the card says what to press and what to look for, with the
section of the course notes. The links are ordinary share links: copy one (right click → <i>Copy link</i>) into
slides or homework. A link replaces this page: come back with the <b>Lessons</b> tab.</p>
"""

# the gallery's look (app.py's CSS is the app's; this one travels with the tab)
CSS = """
.lessons-intro {margin: 0.2em 0 0.4em 0; line-height: 1.5;}
.lesson-card {border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 14px !important; background: white;}
.lesson-card h3 {margin: 0 0 0.15em 0; font-size: 1.08em;}
.lesson-card p {margin: 0.25em 0 0.45em 0; font-size: 0.93em; line-height: 1.45;}
.lesson-card .lesson-meta {color: #6b7280; font-size: 0.85em;}
.lesson-card .lesson-go {font-weight: 600; margin: 0.2em 0 0.3em 0;}
.lesson-card .lesson-go a {color: #2563eb; text-decoration: underline; padding: 0 !important;}
.lesson-card > .block:last-child {margin-top: auto !important; min-height: 0 !important;}
.lesson-card .html-container, #lessons-intro .html-container {padding: 0 !important;}
"""

PER_ROW = 3


def tab_title(key: str) -> str:
    return importlib.import_module(f"playground.tabs.{key}").TITLE


def card_markdown(n: int, lesson: Lesson) -> str:
    """A lesson's card text: title, the tab it opens and the notes' section, what to look for, what to press."""
    return (f"### {n}. {lesson.title}\n"
            f"<span class='lesson-meta'>{tab_title(lesson.tab)} tab · notes {lesson.notes}</span>\n\n"
            f"{lesson.look_for}\n\n"
            f"**Press:** {lesson.press}.")


def card_links(lesson: Lesson) -> str:
    """The card's links as plain anchors (gr.Markdown would open them in a new window): the page reloads on the
    lesson's settings, as a first visit with that link does."""
    return "<p class='lesson-go'>" + " · ".join(
        f"<a href='{html.escape(link(lesson.tab, query))}'>{html.escape(label)} →</a>"
        for label, query in lesson.links()) + "</p>"


def build() -> None:
    for lesson in LESSONS:  # a lesson whose link the tab would partly ignore stops the app here, not in class
        check(lesson)
    gr.HTML(f"<style>{CSS}</style>{INTRO}", elem_id="lessons-intro", padding=False)
    for start in range(0, len(LESSONS), PER_ROW):
        with gr.Row(equal_height=True, elem_classes=["lessons-row"]):
            for n, lesson in enumerate(LESSONS[start:start + PER_ROW], start + 1):
                with gr.Column(min_width=320, elem_classes=["lesson-card"], elem_id=f"lesson-{lesson.id}"):
                    markdown(card_markdown(n, lesson))
                    gr.HTML(card_links(lesson), padding=False)
