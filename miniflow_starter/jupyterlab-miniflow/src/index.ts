import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { NotebookPanel } from '@jupyterlab/notebook';
import { ILatexTypesetter } from '@jupyterlab/rendermime';
import { Contents } from '@jupyterlab/services';
import { checkIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { ExercisesPanel, IPanelHost } from './panel';
import { IReceipt } from './request';

const HIGHLIGHT = 'jp-miniflow-highlight';
const HIGHLIGHT_MS = 2500;
const SAVE_SETTLE_MS = 100; // several files saved at once (Save All) make one check

/** Open `path`, then select, scroll to and highlight the cell whose nbgrader grade_id is `gradeId`. */
async function openCell(
  app: JupyterFrontEnd,
  path: string,
  gradeId: string
): Promise<void> {
  const widget = await app.commands.execute('docmanager:open', { path });
  if (!(widget instanceof NotebookPanel)) {
    return;
  }
  await widget.context.ready;
  await widget.revealed;
  const notebook = widget.content;
  const index = notebook.widgets.findIndex(
    cell =>
      (cell.model.getMetadata('nbgrader') as { grade_id?: string } | undefined)
        ?.grade_id === gradeId
  );
  if (index < 0) {
    return;
  }
  notebook.activeCellIndex = index;
  const cell = notebook.widgets[index];
  await notebook.scrollToCell(cell, 'center');
  cell.addClass(HIGHLIGHT);
  window.setTimeout(() => cell.removeClass(HIGHLIGHT), HIGHLIGHT_MS);
}

function showReceipt(receipt: IReceipt): void {
  const tests = receipt.visible_tests;
  const body = document.createElement('div');
  body.className = 'jp-miniflow-receipt';
  const lines = [
    `Wrote ${PathExt.basename(receipt.zip)} (${Object.keys(receipt.files).length} files) at ${receipt.created}, ` +
      `in ${PathExt.dirname(receipt.zip) || 'the top folder'} of the file browser.`,
    tests.problem
      ? `The visible tests could not run: ${tests.problem}`
      : `${tests.passed} of ${tests.exercises} exercises pass their visible tests.`,
    'Hand in this zip file as your course asks (download it from the file browser: right-click, Download). ' +
      'Its RECEIPT.json lists every file with its SHA-256 hash.'
  ];
  for (const line of lines) {
    const paragraph = document.createElement('p');
    paragraph.textContent = line;
    body.appendChild(paragraph);
  }
  void showDialog({
    title: 'Submission prepared',
    body: new Widget({ node: body }),
    buttons: [Dialog.okButton()]
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterlab-miniflow:exercises',
  description: "The miniflow lab's Exercises panel and hand-in.",
  autoStart: true,
  requires: [ILabShell],
  optional: [IDefaultFileBrowser, ILatexTypesetter],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell,
    fileBrowser: IDefaultFileBrowser | null,
    typesetter: ILatexTypesetter | null
  ) => {
    const host: IPanelHost = {
      currentPath: () => fileBrowser?.model.path ?? '',
      saveAll: async () => {
        await app.commands.execute('docmanager:save-all');
      },
      openCell: (path, gradeId) => openCell(app, path, gradeId),
      openFile: async path => {
        await app.commands.execute('docmanager:open', { path });
      },
      typeset: node => void Promise.resolve(typesetter?.typeset(node)).catch(console.warn),
      showReceipt,
      showError: (title, error) => void showErrorMessage(title, error as Error)
    };
    const panel = new ExercisesPanel(host);
    panel.title.icon = checkIcon;
    labShell.add(panel, 'left', { rank: 150 });

    let pending: number | undefined;
    app.serviceManager.contents.fileChanged.connect(
      (_, change: Contents.IChangedArgs) => {
        const path = change.newValue?.path;
        if (change.type !== 'save' || !path || !panel.isWatched(path)) {
          return;
        }
        window.clearTimeout(pending);
        pending = window.setTimeout(() => void panel.checkAfterSave(path), SAVE_SETTLE_MS);
      }
    );
    fileBrowser?.model.pathChanged.connect(() => void panel.list());

    app.commands.addCommand('miniflow:prepare-submission', {
      label: 'Prepare Submission (miniflow lab)',
      execute: () => panel.prepareSubmission()
    });
    app.commands.addCommand('miniflow:check', {
      label: 'Check Exercises (miniflow lab)',
      execute: () => panel.check(true)
    });

    void app.restored.then(() => panel.list());
  }
};

export default plugin;
