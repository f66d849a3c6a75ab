import { Widget } from '@lumino/widgets';

import { IExercise, IListing, IReceipt, ITest, requestAPI } from './request';

/** What the panel asks of JupyterLab: where the lab is, saving, opening a cell. */
export interface IPanelHost {
  currentPath(): string;
  saveAll(): Promise<void>;
  openCell(notebookPath: string, gradeId: string): Promise<void>;
  openFile(path: string): Promise<void>;
  /** Render the $...$ math in `node` as the notebook does (JupyterLab's LaTeX typesetter). */
  typeset(node: HTMLElement): void;
  showReceipt(receipt: IReceipt): void;
  showError(title: string, error: unknown): void;
}

const STATUS_TEXT: { [status: string]: string } = {
  'not started': 'not started',
  'not implemented': 'not implemented yet',
  failing: 'failing',
  passed: 'passed'
};

/**
 * The Exercises panel: every exercise of the lab's notebooks with its status from the visible
 * tests, points per notebook and overall progress. Checks run on the server, in a process of
 * their own; the panel only waits for their answer, so JupyterLab never blocks.
 */
export class ExercisesPanel extends Widget {
  constructor(private host: IPanelHost) {
    super();
    this.id = 'miniflow-exercises';
    this.addClass('jp-miniflow-panel');
    this.title.caption = 'Exercises';
    this.render();
  }

  /**
   * The exercises of the lab folder at or above the file browser's folder. Their last statuses
   * stay; a folder not checked yet (the first, or another lab's) is checked.
   */
  async list(): Promise<void> {
    const before = this.listing?.folder;
    try {
      const listing = await requestAPI<IListing>(
        `exercises?path=${encodeURIComponent(this.host.currentPath())}`
      );
      this.listing = this.keepStatuses(listing);
      this.problem = '';
    } catch (error) {
      this.listing = null;
      this.problem = messageOf(error);
    }
    this.render();
    if (this.listing && this.listing.folder !== before) {
      await this.check();
    }
  }

  /**
   * Run the visible tests on the saved files and show each exercise's status. With `notebooks`
   * (their names without .ipynb), only theirs: the other exercises keep the status they had.
   */
  async check(saveFirst = false, notebooks: string[] = []): Promise<void> {
    if (saveFirst) {
      await this.host.saveAll();
    }
    this.checks += 1;
    this.render();
    try {
      const listing = await requestAPI<IListing>('check', {
        method: 'POST',
        body: JSON.stringify({ path: this.host.currentPath(), notebooks })
      });
      if (!listing.superseded) {
        this.listing =
          notebooks.length && this.listing ? this.withNotebooks(listing, notebooks) : listing;
        this.problem = '';
      }
    } catch (error) {
      this.problem = messageOf(error);
    } finally {
      this.checks -= 1;
      this.render();
    }
  }

  /** Save everything, check, and write the zip to hand in with its receipt. */
  async prepareSubmission(): Promise<void> {
    await this.host.saveAll();
    this.checks += 1;
    this.render();
    try {
      const receipt = await requestAPI<IReceipt>('submission', {
        method: 'POST',
        body: JSON.stringify({ path: this.host.currentPath() })
      });
      if (!receipt.superseded) {
        this.host.showReceipt(receipt);
      }
    } catch (error) {
      this.host.showError('The submission could not be prepared', error);
    } finally {
      this.checks -= 1;
      this.render();
      void this.list();
    }
  }

  /**
   * After `path` was saved: first the notebooks whose exercises it concerns (a quick answer for the
   * rows the student is working on), then all of them (a node is used by later notebooks too).
   */
  async checkAfterSave(path: string): Promise<void> {
    const first = this.notebooksConcerning(path);
    if (first.length) {
      await this.check(false, first);
    }
    await this.check();
  }

  /** The notebooks (names without .ipynb) with an exercise in the saved file `path`. */
  private notebooksConcerning(path: string): string[] {
    const inside = this.listing?.folder ? path.slice(this.listing.folder.length + 1) : path;
    const names = new Set<string>();
    for (const notebook of this.listing?.notebooks ?? []) {
      if (
        notebook.path === inside ||
        notebook.exercises.some(exercise => exercise.package_file === inside)
      ) {
        names.add(notebook.path.replace(/\.ipynb$/, ''));
      }
    }
    return [...names];
  }

  /** The current listing with the checked `notebooks` taken from `checked`. */
  private withNotebooks(checked: IListing, notebooks: string[]): IListing {
    const current = this.listing as IListing;
    const name = (path: string) => path.replace(/\.ipynb$/, '');
    return {
      ...current,
      notebooks: current.notebooks.map(notebook =>
        notebooks.includes(name(notebook.path))
          ? checked.notebooks.find(other => other.path === notebook.path) ?? notebook
          : notebook
      )
    };
  }

  /** Whether `path` (a saved file) can change a status: a notebook or the miniflow package. */
  isWatched(path: string): boolean {
    if (!this.listing) {
      return path.endsWith('.ipynb');
    }
    const folder = this.listing.folder ? `${this.listing.folder}/` : '';
    if (!path.startsWith(folder)) {
      return false;
    }
    const inside = path.slice(folder.length);
    return (
      (inside.endsWith('.ipynb') && !inside.includes('/')) ||
      (inside.startsWith('miniflow/') && inside.endsWith('.py'))
    );
  }

  private keepStatuses(listing: IListing): IListing {
    if (this.listing?.folder !== listing.folder) {
      return listing;
    }
    const before = new Map<string, IExercise>();
    for (const notebook of this.listing?.notebooks ?? []) {
      for (const exercise of notebook.exercises) {
        before.set(`${notebook.path}#${exercise.grade_id}`, exercise);
      }
    }
    for (const notebook of listing.notebooks) {
      for (const exercise of notebook.exercises) {
        const old = before.get(`${notebook.path}#${exercise.grade_id}`);
        exercise.status = old?.status;
        exercise.message = old?.message;
        for (const test of exercise.tests) {
          const oldTest = old?.tests.find(t => t.grade_id === test.grade_id);
          test.status = oldTest?.status;
          test.message = oldTest?.message;
        }
      }
    }
    listing.checked = this.listing?.checked;
    return listing;
  }

  private render(): void {
    const node = this.node;
    node.textContent = '';
    this.titlesShown.clear();
    const header = element('div', 'jp-miniflow-header');
    header.appendChild(element('h2', 'jp-miniflow-title', 'Exercises'));
    const checkButton = button('Check now', 'jp-miniflow-check', () =>
      this.check(true)
    );
    const submitButton = button(
      'Prepare submission',
      'jp-miniflow-prepare',
      () => this.prepareSubmission()
    );
    checkButton.disabled = submitButton.disabled = !this.listing;
    header.append(checkButton, submitButton);
    node.appendChild(header);

    const state = element('div', 'jp-miniflow-state');
    state.dataset.checking = String(this.checks > 0);
    state.textContent = this.checks > 0 ? 'checking…' : '';
    node.appendChild(state);

    if (this.problem || this.listing?.problem) {
      node.appendChild(
        element(
          'div',
          'jp-miniflow-problem',
          this.problem || this.listing?.problem || ''
        )
      );
    }
    if (!this.listing) {
      return;
    }
    node.appendChild(this.renderProgress(this.listing));
    for (const notebook of this.listing.notebooks) {
      const section = element('section', 'jp-miniflow-notebook');
      section.dataset.notebook = notebook.path;
      const title = element('h3', 'jp-miniflow-notebook-title');
      title.append(
        element('span', '', notebook.path.replace(/\.ipynb$/, '')),
        element('span', 'jp-miniflow-points', `${notebook.points} points`)
      );
      section.appendChild(title);
      const list = element('ul', 'jp-miniflow-exercises');
      for (const exercise of notebook.exercises) {
        list.appendChild(this.renderExercise(notebook.path, exercise));
      }
      section.appendChild(list);
      node.appendChild(section);
    }
    if (this.listing.stubs.length) {
      const stubs = element('section', 'jp-miniflow-stubs');
      stubs.appendChild(
        element('h3', 'jp-miniflow-notebook-title', 'Still to write in miniflow/')
      );
      const list = element('ul', 'jp-miniflow-exercises');
      for (const stub of this.listing.stubs) {
        const row = element('li', 'jp-miniflow-stub', `${stub.name} (${stub.file}:${stub.line})`);
        row.onclick = () => this.host.openFile(this.inFolder(stub.file));
        list.appendChild(row);
      }
      stubs.appendChild(list);
      node.appendChild(stubs);
    }
  }

  private renderProgress(listing: IListing): HTMLElement {
    const exercises: IExercise[] = [];
    for (const notebook of listing.notebooks) {
      exercises.push(...notebook.exercises);
    }
    const passed = exercises.filter(e => e.status === 'passed').length;
    const progress = element('div', 'jp-miniflow-progress');
    const bar = element('progress', '') as HTMLProgressElement;
    bar.max = Math.max(exercises.length, 1);
    bar.value = passed;
    progress.append(
      bar,
      element(
        'span',
        'jp-miniflow-progress-text',
        listing.checked
          ? `${passed} of ${exercises.length} exercises pass their visible tests · ${listing.points} points in all`
          : `${exercises.length} exercises · ${listing.points} points in all`
      )
    );
    return progress;
  }

  private renderExercise(notebookPath: string, exercise: IExercise): HTMLElement {
    const status = exercise.status ?? 'not started';
    const row = element('li', 'jp-miniflow-exercise');
    row.dataset.gradeId = exercise.grade_id;
    row.dataset.status = status;
    row.title = `Open ${notebookPath} at this exercise`;
    const line = element('div', 'jp-miniflow-exercise-line');
    line.append(
      this.typesetTitle('jp-miniflow-exercise-title', exercise.title),
      element('span', 'jp-miniflow-status', STATUS_TEXT[status]),
      element('span', 'jp-miniflow-points', `${exercise.points} pt`)
    );
    row.appendChild(line);
    if (exercise.message && status !== 'passed') {
      row.appendChild(element('div', 'jp-miniflow-message', exercise.message));
    }
    row.onclick = () =>
      this.host.openCell(this.inFolder(notebookPath), exercise.cell);
    const visible = exercise.tests.filter(test => test.visible);
    if (visible.length > 1) {
      const tests = element('ul', 'jp-miniflow-tests');
      for (const test of visible) {
        tests.appendChild(this.renderTest(notebookPath, test));
      }
      row.appendChild(tests);
    }
    return row;
  }

  /** A visible test of an exercise: its own status and first failure; a click opens its cell. */
  private renderTest(notebookPath: string, test: ITest): HTMLElement {
    const status = test.status ?? 'not started';
    const row = element('li', 'jp-miniflow-exercise jp-miniflow-test');
    row.dataset.gradeId = test.grade_id;
    row.dataset.status = status;
    const line = element('div', 'jp-miniflow-exercise-line');
    line.append(
      this.typesetTitle('jp-miniflow-test-title', test.title),
      element('span', 'jp-miniflow-status', STATUS_TEXT[status] ?? status),
      element('span', 'jp-miniflow-points', `${test.points} pt`)
    );
    row.appendChild(line);
    if (test.message && status !== 'passed') {
      row.appendChild(element('div', 'jp-miniflow-message', test.message));
    }
    row.onclick = event => {
      event.stopPropagation();
      void this.host.openCell(this.inFolder(notebookPath), test.grade_id);
    };
    return row;
  }

  /**
   * A title taken from the notebook's markdown or a test's comment, its math typeset.
   *
   * Typeset once: each render moves the same node into the new row, so a check's
   * start and end do not show the raw `$...$` again while MathJax works.
   */
  private typesetTitle(className: string, text: string): HTMLElement {
    if (!text.includes('$')) {
      return element('span', className, text);
    }
    const key = `${className}\n${text}`;
    let node = this.typesetTitles.get(key);
    if (!node || this.titlesShown.has(key)) {
      // A title shown twice in one render gets a node of its own.
      node = element('span', className, text);
      this.host.typeset(node);
      this.typesetTitles.set(key, node);
    }
    this.titlesShown.add(key);
    return node;
  }

  private inFolder(path: string): string {
    return this.listing?.folder ? `${this.listing.folder}/${path}` : path;
  }

  private listing: IListing | null = null;
  private typesetTitles = new Map<string, HTMLElement>();
  private titlesShown = new Set<string>(); // by the render under way
  private problem = '';
  private checks = 0;
}

function element(tag: string, className: string, text?: string): HTMLElement {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function button(
  text: string,
  className: string,
  onClick: () => Promise<void>
): HTMLButtonElement {
  const node = element('button', `jp-Button ${className}`, text) as HTMLButtonElement;
  node.onclick = () => void onClick();
  return node;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
